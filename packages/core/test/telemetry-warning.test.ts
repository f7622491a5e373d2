/**
 * The process warnings of telemetry (docs/observability.md, Process warnings): an SDK that throws
 * is said once for the process (`KB_PLUGIN_EXECUTION_OTEL`, with what it threw), however many
 * executions meet it, and never fails one; with no SDK, or a working one, nothing is said. Each
 * host is a Node process of its own: the warning is once per process.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runHostProgram, TINY_BACKEND_SOURCE } from './tiny-backend-source.js';

/**
 * What the host registers: no SDK, a working one, one whose span processor throws, or a working one
 * under a context manager whose with() throws (before or after its function) or skips it; or a
 * working one under a host whose onLog throws (run with the execution span active).
 */
type Sdk = 'none' | 'working' | 'failing' | 'with-throws' | 'with-throws-after' | 'with-skips' | 'onlog-throws';


/** A host on core's built backend kit (imported by the package's own name) with `sdk` registered, three executions, then what it saw. */
const host = (sdk: Sdk, pluginDir: string) => `
import * as kit from '@kb-labs/plugin-execution-core/backend-kit';
import { context, ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
const warnings = [];
process.on('warning', (warning) => warnings.push({ code: warning.code, message: warning.message }));
const exporter = new InMemorySpanExporter();
const failing = { onStart() {}, onEnd() { throw new Error('the exporter is down'); }, forceFlush: async () => {}, shutdown: async () => {} };
const processor = ${JSON.stringify(sdk)} === 'failing' ? failing : new SimpleSpanProcessor(exporter);
const onLog = ${JSON.stringify(sdk)} === 'onlog-throws' ? () => { throw new Error('the log sink is down'); } : undefined;
if (${JSON.stringify(sdk)} !== 'none') trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [processor] }));
// A context manager that breaks its contract: with() throws before or after calling its function, or returns without calling it.
const brokenWith = { 'with-throws': () => { throw new Error('the context manager is down'); }, 'with-skips': () => undefined, 'with-throws-after': (_c, fn, thisArg, ...args) => { fn.apply(thisArg, args); throw new Error('the context manager broke after it'); } }[${JSON.stringify(sdk)}];
if (brokenWith) context.setGlobalContextManager({ active: () => ROOT_CONTEXT, with: brokenWith, bind: (_c, target) => target, enable() { return this; }, disable() { return this; } });
${TINY_BACKEND_SOURCE}
const backend = new TinyBackend({ plugins: [${JSON.stringify(pluginDir)}], workspace: false });
const results = [];
for (let i = 0; i < 3; i++) results.push((await backend.execute({ pluginId: '@test/warned', handlerId: 'run', input: i }, { onLog })).ok);
await backend.shutdown();
await new Promise((resolve) => setImmediate(resolve));
console.log(JSON.stringify({ results, spans: exporter.getFinishedSpans().length, warnings }));
`;

let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'kb-telemetry-warning-'));
  await writeFile(path.join(tmp, 'kb.plugin.json'), JSON.stringify({ id: '@test/warned', version: '1.0.0', handlers: { run: { entry: 'run.mjs' } } }));
  await writeFile(path.join(tmp, 'run.mjs'), 'export default async (input, ctx) => { ctx.logger.info(\'running\'); return input; };\n');
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** What a host saw: each execution's `ok`, the spans exported, the process warnings. */
interface HostReport {
  results: boolean[];
  spans: number;
  warnings: Array<{ code: string; message: string }>;
}

async function hostRun(sdk: Sdk): Promise<HostReport> {
  return (await runHostProgram(`telemetry-warning-${sdk}`, host(sdk, tmp))) as HostReport;
}

describe('telemetry process warnings', () => {
  it('an SDK that throws as each span ends: every execution succeeds, and one KB_PLUGIN_EXECUTION_OTEL warning says what it threw', async () => {
    const report = await hostRun('failing');
    expect(report.results).toEqual([true, true, true]);
    expect(report.warnings).toEqual([{ code: 'KB_PLUGIN_EXECUTION_OTEL', message: 'OpenTelemetry recording failed; executions go on: the exporter is down' }]);
  });

  it.each([
    ['throws before calling its function', 'with-throws', 'the context manager is down'],
    ['throws after calling its function', 'with-throws-after', 'the context manager broke after it'],
    ['returns without calling its function', 'with-skips', "the context manager's with() returned without calling its function"],
  ] as const)('a context manager whose with() %s: every execution succeeds, and one warning says so', async (_label, sdk, said) => {
    const report = await hostRun(sdk);
    // (No span reaches the exporter: the SDK's own SimpleSpanProcessor exports inside context.with().)
    expect({ results: report.results, warnings: report.warnings }).toEqual({ results: [true, true, true], warnings: [{ code: 'KB_PLUGIN_EXECUTION_OTEL', message: `OpenTelemetry recording failed; executions go on: ${said}` }] });
  });

  it('a host onLog that throws while the execution span is active: its own warning, never an OpenTelemetry one', async () => {
    const report = await hostRun('onlog-throws');
    expect(report.results).toEqual([true, true, true]);
    expect(report.spans).toBe(3);
    expect(report.warnings.map((warning) => warning.code)).toEqual(['KB_PLUGIN_CALLBACK_FAILED']);
    expect(report.warnings[0]!.message).toContain('the log sink is down');
  });

  it.each([['no', 'none'], ['a working', 'working']] as const)('with %s SDK registered: no warning at all', async (_label, sdk) => {
    const report = await hostRun(sdk);
    expect(report).toEqual({ results: [true, true, true], spans: sdk === 'working' ? 3 : 0, warnings: [] });
  });
});
