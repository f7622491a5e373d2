// Runs every package's tests (built first: `turbo run build` before this) in three lanes side by
// side, one step at a time in each. The queue package's tests mostly wait on timers, heartbeats
// and a broker, so they run as two steps in two lanes (its chaos files, and the rest), each beside
// packages whose tests keep a core busy: on two cores the same tests as one lane after another
// take about twice as long. Within a step nothing changes: a package's test files run as its
// vitest config says (the queue's one file at a time). A package that fails does not stop the
// others (--continue): every package's counts are printed.
//
//   node scripts/test-lanes.mjs            # what `npm test` runs after building
//   node scripts/test-lanes.mjs --serial   # the lanes one after the other (a loaded machine)
import { spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const turbo = path.join(repo, 'node_modules', '.bin', 'turbo');
const QUEUE = '@kb-labs/plugin-execution-queue';
const UMBRELLA = '@kb-labs/plugin-execution';
const CORE = '@kb-labs/plugin-execution-core';
const CHANNELS = '@kb-labs/plugin-execution-channels';
// --only: the builds ran before this; a lane must not restore a package's dist while another runs from it.
const common = ['run', 'test', '--only', '--continue', '--concurrency=1'];
/** One turbo run: the packages named (or all but those in `except`), with arguments for vitest. */
const step = ({ packages = [], except = [], vitest = [] }) => [
  ...common,
  ...packages.map((name) => `--filter=${name}`),
  ...except.map((name) => `--filter=!${name}`),
  ...(vitest.length ? ['--', ...vitest] : []),
];
const lanes = [
  [step({ packages: [QUEUE], vitest: ['test/chaos-'] }), step({ packages: [UMBRELLA] })],
  [step({ packages: [QUEUE], vitest: ['--exclude', '**/chaos-*.test.ts'] }), step({ packages: [CORE, CHANNELS] })],
  [step({ except: [QUEUE, UMBRELLA, CORE, CHANNELS] })],
];

/** Run one step; its output goes out line by line (two lanes never cut into each other's lines). Resolves its exit code. */
function runStep(args) {
  return new Promise((resolve) => {
    // turbo looks for the package manager (pnpm, a dev dependency) on PATH, as `npm test` has it.
    const env = { ...process.env, PATH: `${path.dirname(turbo)}${path.delimiter}${process.env.PATH ?? ''}` };
    const child = spawn(turbo, args, { cwd: repo, env, stdio: ['ignore', 'pipe', 'pipe'] });
    for (const [from, to] of [
      [child.stdout, process.stdout],
      [child.stderr, process.stderr],
    ]) {
      readline.createInterface({ input: from, crlfDelay: Infinity }).on('line', (line) => to.write(line + '\n'));
    }
    child.on('error', (error) => {
      console.error(`test-lanes: could not start turbo (${error.message}); run the install first`);
      resolve(1);
    });
    child.on('close', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

/** Run a lane's steps one after the other (all of them, whatever fails). Resolves 1 if any failed. */
async function runLane(steps) {
  let failed = false;
  for (const args of steps) failed = (await runStep(args)) !== 0 || failed;
  return failed ? 1 : 0;
}

const serial = process.argv.includes('--serial');
const codes = [];
if (serial) {
  for (const lane of lanes) codes.push(await runLane(lane));
} else {
  codes.push(...(await Promise.all(lanes.map(runLane))));
}
process.exitCode = codes.some((code) => code !== 0) ? 1 : 0;
