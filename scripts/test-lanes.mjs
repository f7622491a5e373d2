// Runs every package's tests (built first: `turbo run build` before this) in two lanes side by
// side, one package at a time in each: the queue package's tests, which spend most of their time
// waiting on timers, heartbeats and a broker, with core's and channels', beside every other
// package's. The same tests as one lane after another, in about half the time on two cores.
// Within a lane nothing changes: a package's test files run as its vitest config says (the
// queue's one file at a time). A package that fails does not stop the others (--continue): every
// package's counts are printed.
//
//   node scripts/test-lanes.mjs            # what `npm test` runs after building
//   node scripts/test-lanes.mjs --serial   # the lanes one after the other (a loaded machine)
import { spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const turbo = path.join(repo, 'node_modules', '.bin', 'turbo');
const LANE_A = ['@kb-labs/plugin-execution-queue', '@kb-labs/plugin-execution-core', '@kb-labs/plugin-execution-channels'];
// --only: the builds ran before this; a lane must not restore a package's dist while the other runs from it.
const common = ['run', 'test', '--only', '--continue', '--concurrency=1'];
const lanes = [
  [...common, ...LANE_A.map((name) => `--filter=${name}`)],
  [...common, ...LANE_A.map((name) => `--filter=!${name}`)],
];

/** Run one lane; its output goes out line by line (two lanes never cut into each other's lines). Resolves its exit code. */
function runLane(args) {
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

const serial = process.argv.includes('--serial');
const codes = [];
if (serial) {
  for (const lane of lanes) codes.push(await runLane(lane));
} else {
  codes.push(...(await Promise.all(lanes.map(runLane))));
}
process.exitCode = codes.some((code) => code !== 0) ? 1 : 0;
