// The demo host: loads the example plugins and runs them on every backend that is installed,
// printing a table of backend, handler, outcome and duration. Then the queue backend with two
// worker processes (when a nats-server is available) and, if present, the channel demo.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createExecutionBackend } from '@kb-labs/plugin-execution';

const here = path.dirname(fileURLToPath(import.meta.url));
const plugins = ['hello', 'toolbox', 'hostile'].map((name) => path.resolve(here, '..', 'plugins', name));

/** The host's services: handlers reach them as ctx.platform, only as far as they declared. */
function makePlatform() {
  const kv = new Map();
  return {
    kv: {
      async get(key) {
        return kv.get(key) ?? null;
      },
      async set(key, value) {
        kv.set(key, value);
      },
    },
    vault: {
      async read() {
        return 'the crown jewels';
      },
    },
  };
}

const scenarios = [
  { handler: 'hello/greet', input: { name: 'Ada', excited: true }, context: { tenantId: 'acme', host: { kind: 'cli' } } },
  { handler: 'hello/greet', input: { name: '' }, note: 'invalid input' },
  { handler: 'hello/count-words', input: { text: 'the cat and the hat' } },
  { handler: 'hello/progress', input: { steps: 4 } },
  { handler: 'hello/fail' },
  { handler: 'toolbox/hash', input: { ms: 30 } },
  { handler: 'toolbox/remember', input: { key: 'colour', value: 'teal' }, grant: { platform: { kv: true } } },
  { handler: 'toolbox/remember', input: { key: 'colour', value: 'teal' }, note: 'not granted' },
  { handler: 'hostile/steal-secrets', grant: { platform: { kv: true } }, note: 'vault not granted' },
  { handler: 'hostile/spin', isolatingOnly: true, note: 'while (true) {}' },
  { handler: 'hostile/crash', isolatingOnly: true, note: 'process.exit(13)' },
];

/** `text` cut at a word before `max` characters, with an ellipsis when cut. */
function shorten(text, max) {
  if (text.length <= max) return text;
  const cut = text.slice(0, max);
  return `${cut.slice(0, Math.max(cut.lastIndexOf(' '), max / 2))} …`;
}

function describeOutcome(result, events) {
  if (!result.ok) return `${result.error.code}: ${shorten(result.error.message.split('\n')[0], 90)}`;
  const extras = [];
  if (result.meta.artifacts.length) extras.push(`artifacts ${result.meta.artifacts.join(',')}`);
  if (events.length) extras.push(`${events.length} events`);
  return `ok ${JSON.stringify(result.data).slice(0, 50)}${extras.length ? `  (${extras.join('; ')})` : ''}`;
}

const root = await mkdtemp(path.join(os.tmpdir(), 'kb-demo-'));
const rows = [];
for (const type of ['in-process', 'worker-pool', 'subprocess']) {
  // Each backend's own options only: one it does not know is refused, naming it.
  const own = type === 'worker-pool' ? { maxThreads: 2 } : type === 'subprocess' ? { maxConcurrency: 2 } : {};
  const backend = createExecutionBackend({ type, plugins, platform: makePlatform(), workspace: { root }, ...own });
  const health = await backend.health();
  if (!health.ok) {
    // The whole reason: the first line of an options error says only that there is one.
    rows.push([type, '-', `not available: ${health.problems.join('; ').replace(/\s*\n\s*/g, ' ').slice(0, 200)}`, '']);
    await backend.shutdown();
    continue;
  }
  for (const scenario of scenarios) {
    const [plugin, handlerId] = scenario.handler.split('/');
    const label = scenario.note ? `${scenario.handler} (${scenario.note})` : scenario.handler;
    if (scenario.isolatingOnly && type === 'in-process') {
      rows.push([type, label, 'skipped: in-process cannot stop or survive this; use worker-pool or subprocess', '']);
      continue;
    }
    const events = [];
    const result = await backend.execute(
      { pluginId: `@examples/${plugin}`, handlerId, input: scenario.input, context: { ...scenario.context, ...(scenario.grant ? { permissions: scenario.grant } : {}) } },
      { onEvent: (e) => events.push(e) },
    );
    rows.push([type, label, describeOutcome(result, events), `${result.meta.durationMs.toFixed(1)} ms`]);
  }
  const stats = await backend.stats();
  rows.push([type, '(stats)', `by outcome ${JSON.stringify(stats.byOutcome)}`, `p50 ${stats.latency.total.p50} ms`]);
  await backend.shutdown();
}
await rm(root, { recursive: true, force: true });

const headers = ['backend', 'handler', 'outcome', 'duration'];
const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const line = (cells) => cells.map((c, i) => c.padEnd(widths[i])).join('  ');
console.log(line(headers));
console.log(widths.map((w) => '-'.repeat(w)).join('  '));
for (const row of rows) console.log(line(row));

console.log('\nQueue backend: two worker processes through NATS JetStream');
await import(pathToFileURL(path.join(here, 'queue-demo.mjs')).href);

const channelDemo = path.join(here, 'channel-demo.mjs');
if (existsSync(channelDemo)) {
  console.log('\nWebSocket channel demo');
  await import(pathToFileURL(channelDemo).href);
}
