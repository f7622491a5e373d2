// Start-up cost (issue 15): the wall time of a Node process that imports the umbrella and exits,
// against a bare `node -e 0`, each the median of ROUNDS processes started in interleaved rounds
// (the order rotates every round) so that every contender shares the machine's noise. The
// umbrella's ES build and its CommonJS build are timed, core alone beside them, and an import of
// an empty ES module file: what Node's ES module loader costs any ES host before code of ours.
//
// Every child gets the same small environment: PATH only (SYSTEMROOT too on Windows). No
// NODE_OPTIONS, and no NODE_EXTRA_CA_CERTS, which makes every Node process load a CA bundle at
// start (about 30 ms on the reference machine): it would pad the baseline and flatter the ratio.
// `--inherit-env` passes this process's environment instead, for comparison.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { heading, report } from '../../../scripts/bench-report.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const ROUNDS = 30;
const WARMUP = 2;
const TARGET = { op: '<=', value: 1.5 };

const inheritEnv = process.argv.includes('--inherit-env');
const env = inheritEnv ? { ...process.env } : { PATH: process.env.PATH ?? '' };
if (!inheritEnv && process.env.SYSTEMROOT) env.SYSTEMROOT = process.env.SYSTEMROOT;

const umbrellaEsm = pathToFileURL(path.join(here, '..', 'dist', 'index.js')).href;
const umbrellaCjs = path.join(here, '..', 'dist', 'index.cjs');
// Resolved from the umbrella, as a host that installed it would.
const coreEsm = import.meta.resolve('@kb-labs/plugin-execution-core');
const coreCjs = fileURLToPath(coreEsm).replace(/\.js$/, '.cjs');

const esm = (url) => ['--input-type=module', '-e', `await import(${JSON.stringify(url)})`];
const cjs = (file) => ['-e', `require(${JSON.stringify(file)})`];

const contenders = [
  { name: 'node -e 0', args: ['-e', '0'] },
  { name: 'umbrella, ES build', args: esm(umbrellaEsm) },
  { name: 'umbrella, CommonJS build', args: cjs(umbrellaCjs) },
  { name: 'core, ES build', args: esm(coreEsm) },
  { name: 'core, CommonJS build', args: cjs(coreCjs) },
  { name: 'an empty ES module file (the ES loader alone)', args: esm(pathToFileURL(path.join(here, 'fixtures', 'empty.mjs')).href) },
];

/** Milliseconds from spawn to exit of one child; a child that fails stops the bench. */
function timeStart({ name, args }) {
  const t0 = performance.now();
  const child = spawnSync(process.execPath, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  const ms = performance.now() - t0;
  if (child.status !== 0) throw new Error(`${name} exited with ${child.status ?? child.signal}: ${String(child.stderr).slice(0, 500)}`);
  return ms;
}

for (let i = 0; i < WARMUP; i++) for (const contender of contenders) timeStart(contender);
const samples = contenders.map(() => []);
for (let round = 0; round < ROUNDS; round++) {
  for (let k = 0; k < contenders.length; k++) {
    const index = (round + k) % contenders.length;
    samples[index].push(timeStart(contenders[index]));
  }
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const medians = samples.map(median);
const [baseline] = medians;

heading(`start-up: process start to exit, median of ${ROUNDS} interleaved rounds (Node ${process.version}, env: ${inheritEnv ? 'inherited' : 'PATH only'})`);
contenders.forEach(({ name }, i) => report(`start-up: ${name}`, medians[i], 'ms'));
report('start-up: umbrella ES build / node -e 0', medians[1] / baseline, 'x', TARGET);
report('start-up: umbrella CommonJS build / node -e 0', medians[2] / baseline, 'x', TARGET);
report('start-up: core ES build / node -e 0', medians[3] / baseline, 'x');
report('start-up: core CommonJS build / node -e 0', medians[4] / baseline, 'x');
report('start-up: an empty ES module file / node -e 0', medians[5] / baseline, 'x');
