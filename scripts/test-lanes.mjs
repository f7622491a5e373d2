// Runs every package's tests (built first: `turbo run build` before this) as steps taken by four
// lanes side by side: each lane takes the next step of the list as it finishes one, the longest
// first, so that no lane ends with a long step while the others are idle. A step is one package's
// tests, or part of them (the umbrella's are two: its CLI's files, which start a process each, and
// the rest), or the lint and type-check of every package (publint and attw per package, one tsc
// program for all: they fill the CPU the queue's waiting files leave). Within a step nothing
// changes: a package's test files run as its vitest config says (the queue's three at a time:
// they mostly wait on timers, heartbeats and a broker). A step that fails does not stop the others
// (--continue): every package's counts are printed.
//
//   node scripts/test-lanes.mjs            # what `npm test` runs after building
//   node scripts/test-lanes.mjs --serial   # one lane: the steps one after the other (a loaded machine)
import { spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(repo, 'node_modules', '.bin');
const turbo = path.join(bin, 'turbo');
const QUEUE = '@kb-labs/plugin-execution-queue';
const UMBRELLA = '@kb-labs/plugin-execution';
const CORE = '@kb-labs/plugin-execution-core';
const CHANNELS = '@kb-labs/plugin-execution-channels';
// --only: the builds ran before this; a lane must not restore a package's dist while another runs from it.
const common = ['run', 'test', '--only', '--continue', '--concurrency=1'];
/** One turbo run: the packages named (or all but those in `except`), with arguments for vitest. */
const step = ({ packages = [], except = [], vitest = [] }) => [
  turbo,
  ...common,
  ...packages.map((name) => `--filter=${name}`),
  ...except.map((name) => `--filter=!${name}`),
  ...(vitest.length ? ['--', ...vitest] : []),
];
/** The lint of every package (`--only`: built already), then one tsc over every package (tsconfig.typecheck.json). */
const LINT = [turbo, 'run', 'lint', '--only', '--continue'];
const TYPECHECK = [path.join(bin, 'tsc'), '-p', 'tsconfig.typecheck.json'];
// The umbrella's CLI files: by name as vitest filters them (a part of the path), and as globs to leave them out.
const CLI_FILES = ['test/cli', 'test/worker-command.test.ts'];
const CLI_GLOBS = ['**/test/cli*.test.ts', '**/test/worker-command.test.ts'];
/**
 * The order the lanes take them in: the queue first, whose files mostly wait (7 minutes, three
 * files at a time using under one core of a 2-core machine): taken last, it was the run's tail,
 * alone; then the others longest first.
 */
const steps = [
  step({ packages: [QUEUE] }),
  step({ packages: ['@kb-labs/plugin-execution-subprocess'] }),
  step({ packages: [UMBRELLA], vitest: CLI_GLOBS.flatMap((glob) => ['--exclude', glob]) }),
  step({ packages: ['@kb-labs/plugin-execution-worker-pool'] }),
  step({ packages: [UMBRELLA], vitest: CLI_FILES }),
  step({ packages: [CORE] }),
  step({ packages: ['@kb-labs/plugin-execution-in-process'] }),
  step({ packages: [CHANNELS] }),
  LINT,
  TYPECHECK,
  // The rest: conformance (its own unit tests), the examples.
  step({ except: [QUEUE, UMBRELLA, CORE, CHANNELS, '@kb-labs/plugin-execution-subprocess', '@kb-labs/plugin-execution-worker-pool', '@kb-labs/plugin-execution-in-process'] }),
];

/** What a step is called in the line that says how it ended: its filters and vitest arguments, or its command. */
const stepName = ([command, ...args]) =>
  command === turbo && args[1] === 'test' ? args.filter((arg) => !common.includes(arg)).join(' ') : [path.basename(command), ...args].join(' ');

/** Run a step and say how it ended and how long it took (the run's time, step by step, is in its log). Resolves its exit code. */
async function runTimedStep(command) {
  const started = performance.now();
  const code = await runStep(command);
  const seconds = Math.round((performance.now() - started) / 1000);
  console.log(`test-lanes: ${stepName(command)}: ${code === 0 ? 'passed' : `FAILED (exit ${code})`} in ${seconds} s`);
  return code;
}

/** Run one step (a command and its arguments); its output goes out line by line (two lanes never cut into each other's lines). Resolves its exit code. */
function runStep([command, ...args]) {
  return new Promise((resolve) => {
    // turbo looks for the package manager (pnpm, a dev dependency) on PATH, as `npm test` has it.
    const env = { ...process.env, PATH: `${path.dirname(turbo)}${path.delimiter}${process.env.PATH ?? ''}` };
    const child = spawn(command, args, { cwd: repo, env, stdio: ['ignore', 'pipe', 'pipe'] });
    for (const [from, to] of [
      [child.stdout, process.stdout],
      [child.stderr, process.stderr],
    ]) {
      readline.createInterface({ input: from, crlfDelay: Infinity }).on('line', (line) => to.write(line + '\n'));
    }
    child.on('error', (error) => {
      console.error(`test-lanes: could not start ${path.basename(command)} (${error.message}); run the install first`);
      resolve(1);
    });
    child.on('close', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

/** A lane: takes the next step not yet taken until none is left. Resolves 1 if any it ran failed. */
async function runLane(queue) {
  let failed = false;
  for (let command = queue.shift(); command; command = queue.shift()) failed = (await runTimedStep(command)) !== 0 || failed;
  return failed ? 1 : 0;
}

const queue = [...steps];
// Four, on two cores: a quarter of the CPU was idle with three (the queue's and the subprocess
// backend's files mostly wait), and the run took 909 and 899 s against 987 s with three, the same
// tests passing (session 83, fresh clones).
const lanes = process.argv.includes('--serial') ? 1 : 4;
const codes = await Promise.all(Array.from({ length: lanes }, () => runLane(queue)));
process.exitCode = codes.some((code) => code !== 0) ? 1 : 0;
