/**
 * The process warnings of telemetry (docs/observability.md, Process warnings): an SDK that throws
 * is said once for the process (`KB_PLUGIN_EXECUTION_OTEL`, with what it threw), however many
 * executions meet it, and never fails one; with no SDK, or a working one, nothing is said. Each
 * host is a Node process of its own: the warning is once per process.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TINY_BACKEND_SOURCE } from './tiny-backend-source.js';

const run = promisify(execFile);
const coreDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** A host on core's built backend kit (imported by the package's own name) with `sdk` registered, three executions, then what it saw. */
const host = (sdk: 'none' | 'working' | 'failing', pluginDir: string) => `
import * as kit from '@kb-labs/plugin-execution-core/backend-kit';
import { trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
const warnings = [];
process.on('warning', (warning) => warnings.push({ code: warning.code, message: warning.message }));
const exporter = new InMemorySpanExporter();
const failing = { onStart() {}, onEnd() { throw new Error('the exporter is down'); }, forceFlush: async () => {}, shutdown: async () => {} };
const processor = ${JSON.stringify(sdk)} === 'failing' ? failing : new SimpleSpanProcessor(exporter);
if (${JSON.stringify(sdk)} !== 'none') trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [processor] }));
${TINY_BACKEND_SOURCE}
const backend = new TinyBackend({ plugins: [${JSON.stringify(pluginDir)}], workspace: false });
const results = [];
for (let i = 0; i < 3; i++) results.push((await backend.execute({ pluginId: '@test/warned', handlerId: 'run', input: i })).ok);
await backend.shutdown();
await new Promise((resolve) => setImmediate(resolve));
console.log(JSON.stringify({ results, spans: exporter.getFinishedSpans().length, warnings }));
`;

let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'kb-telemetry-warning-'));
  await writeFile(path.join(tmp, 'kb.plugin.json'), JSON.stringify({ id: '@test/warned', version: '1.0.0', handlers: { run: { entry: 'run.mjs' } } }));
  await writeFile(path.join(tmp, 'run.mjs'), 'export default async (input) => input;\n');
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function hostRun(sdk: 'none' | 'working' | 'failing'): Promise<{ results: boolean[]; spans: number; warnings: Array<{ code: string; message: string }> }> {
  // A file in core's folder, so that it resolves core by its own name and the API and SDK core's tests use.
  const file = path.join(coreDir, `.telemetry-warning-${process.pid}-${sdk}.mjs`);
  await writeFile(file, host(sdk, tmp));
  try {
    const { stdout } = await run(process.execPath, [file], { cwd: coreDir, env: { PATH: process.env.PATH ?? '' }, timeout: 20_000 });
    return JSON.parse(stdout.trim().split('\n').at(-1)!);
  } finally {
    await rm(file, { force: true });
  }
}

describe('telemetry process warnings', () => {
  it('an SDK that throws as each span ends: every execution succeeds, and one KB_PLUGIN_EXECUTION_OTEL warning says what it threw', async () => {
    const report = await hostRun('failing');
    expect(report.results).toEqual([true, true, true]);
    expect(report.warnings).toEqual([{ code: 'KB_PLUGIN_EXECUTION_OTEL', message: 'OpenTelemetry recording failed; executions go on: the exporter is down' }]);
  });

  it.each([['no', 'none'], ['a working', 'working']] as const)('with %s SDK registered: no warning at all', async (_label, sdk) => {
    const report = await hostRun(sdk);
    expect(report).toEqual({ results: [true, true, true], spans: sdk === 'working' ? 3 : 0, warnings: [] });
  });
});
