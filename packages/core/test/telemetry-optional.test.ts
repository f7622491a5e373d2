/**
 * `@opentelemetry/api` is an optional peer dependency: core must run without it. Checked for real
 * on the built package (ESM and CommonJS): a copy of core's dist in a temporary tree where the API
 * cannot be resolved, loaded by a child process whose host registered the real SDK through its own
 * copy of the API. Executions must succeed untraced, with one warning that says what to install;
 * the same tree with the API beside core traces them, so it is the API's absence that made the
 * difference.
 */
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TINY_BACKEND_SOURCE } from './tiny-backend-source.js';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const coreDir = path.resolve(here, '..');
const requireFromCore = createRequire(path.join(coreDir, 'package.json'));

/** The host's side, the same in both module systems: its own API copy and SDK, a backend built on core's kit. */
const HOST_BODY = `
const [apiPath, sdkPath, pluginDir, withMeter] = process.argv.slice(2);
const warnings = [];
process.on('warning', (warning) => warnings.push(String(warning.code) + ': ' + warning.message));
const api = require(apiPath);
const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = require(sdkPath);
const exporter = new InMemorySpanExporter();
api.trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
// A meter provider too, when asked: core never takes a meter from one its copy of the API refused.
if (withMeter === 'meter') api.metrics.setGlobalMeterProvider({ getMeter() { throw new Error('core took a meter from a refused provider'); } });
${TINY_BACKEND_SOURCE}
async function main() {
  const backend = new TinyBackend({ plugins: [pluginDir], workspace: false });
  const logs = [];
  const result = await backend.execute({ pluginId: '@test/traced', handlerId: 'run' }, { onLog: (entry) => logs.push(entry) });
  await backend.shutdown();
  await new Promise((resolve) => setImmediate(resolve));
  console.log(JSON.stringify({ ok: result.ok, data: result.data, logTraceId: logs[0]?.traceId ?? null, spans: exporter.getFinishedSpans().map((s) => s.name), warnings }));
}
`;

const HOSTS = {
  'host.cjs': `const kit = require('@kb-labs/plugin-execution-core/backend-kit');\n${HOST_BODY}\nmain();\n`,
  'host.mjs': `import { createRequire } from 'node:module';\nimport * as kit from '@kb-labs/plugin-execution-core/backend-kit';\nconst require = createRequire(import.meta.url);\n${HOST_BODY}\nawait main();\n`,
};

interface HostReport {
  ok: boolean;
  data: { traceparent: string | null };
  logTraceId: string | null;
  spans: string[];
  warnings: string[];
}

/** A project of its own with core copied in (zod beside it), the traced plugin and the two hosts. */
async function treeWithCore(prefix: string): Promise<string> {
  const tree = await mkdtemp(path.join(os.tmpdir(), prefix));
  // A copy, not a link: Node resolves a link to its real path, where the API would be found.
  const core = path.join(tree, 'node_modules', '@kb-labs', 'plugin-execution-core');
  await mkdir(core, { recursive: true });
  await cp(path.join(coreDir, 'dist'), path.join(core, 'dist'), { recursive: true });
  await cp(path.join(coreDir, 'package.json'), path.join(core, 'package.json'));
  await symlink(path.dirname(requireFromCore.resolve('zod/package.json')), path.join(tree, 'node_modules', 'zod'), 'dir');
  const plugin = path.join(tree, 'plugin');
  await mkdir(plugin);
  await writeFile(path.join(plugin, 'kb.plugin.json'), JSON.stringify({ id: '@test/traced', version: '1.0.0', handlers: { run: { entry: './run.mjs' } } }));
  await writeFile(path.join(plugin, 'run.mjs'), "export default async (_input, ctx) => { ctx.logger.info('hi'); return { traceparent: ctx.traceparent ?? null }; };\n");
  for (const [name, source] of Object.entries(HOSTS)) await writeFile(path.join(tree, name), source);
  return tree;
}

describe('without @opentelemetry/api installed', () => {
  let tree: string;

  beforeAll(async () => {
    tree = await treeWithCore('kb-otel-optional-');
  });

  afterAll(async () => {
    await rm(tree, { recursive: true, force: true });
  });

  async function runHost(file: string): Promise<HostReport> {
    const args = [path.join(tree, file), requireFromCore.resolve('@opentelemetry/api'), requireFromCore.resolve('@opentelemetry/sdk-trace-base'), path.join(tree, 'plugin')];
    const { stdout } = await run(process.execPath, args, { cwd: tree, env: { PATH: process.env.PATH ?? '' } });
    return JSON.parse(stdout.trim().split('\n').at(-1)!) as HostReport;
  }

  it.each(Object.keys(HOSTS))('%s: executions succeed untraced, with one warning naming the package', async (file) => {
    const report = await runHost(file);
    expect(report).toMatchObject({ ok: true, data: { traceparent: null }, logTraceId: null, spans: [] });
    expect(report.warnings).toHaveLength(1);
    expect(report.warnings[0]).toContain('KB_PLUGIN_EXECUTION_OTEL');
    expect(report.warnings[0]).toContain('@opentelemetry/api cannot be resolved');
  });

  it.each(Object.keys(HOSTS))('%s: the same tree with the API beside core traces them', async (file) => {
    const link = path.join(tree, 'node_modules', '@opentelemetry', 'api');
    await mkdir(path.dirname(link), { recursive: true });
    await symlink(await realpath(path.join(coreDir, 'node_modules', '@opentelemetry', 'api')), link, 'dir');
    try {
      const report = await runHost(file);
      expect(report).toMatchObject({ ok: true, spans: ['execute @test/traced/run'], warnings: [] });
      expect(report.data.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
      expect(report.data.traceparent).toContain(report.logTraceId);
    } finally {
      await rm(link);
    }
  });
});

describe('with the host registering through an older copy of @opentelemetry/api than core loads', () => {
  let tree: string;
  let olderApi: string;

  beforeAll(async () => {
    tree = await treeWithCore('kb-otel-two-copies-');
    // Beside core: the API as installed. The host's own: a copy of it saying it is 1.3.0, an earlier
    // minor, whose registrations core's copy does not accept (the API's own version rule).
    await mkdir(path.join(tree, 'node_modules', '@opentelemetry'));
    await symlink(await realpath(path.join(coreDir, 'node_modules', '@opentelemetry', 'api')), path.join(tree, 'node_modules', '@opentelemetry', 'api'), 'dir');
    olderApi = path.join(tree, 'host-api');
    await cp(await realpath(path.join(coreDir, 'node_modules', '@opentelemetry', 'api')), olderApi, { recursive: true, dereference: true });
    await writeFile(path.join(olderApi, 'build', 'src', 'version.js'), "'use strict';\nObject.defineProperty(exports, '__esModule', { value: true });\nexports.VERSION = '1.3.0';\n");
  });

  afterAll(async () => {
    await rm(tree, { recursive: true, force: true });
  });

  async function runHost(file: string, ...extra: string[]): Promise<HostReport> {
    const args = [path.join(tree, file), olderApi, requireFromCore.resolve('@opentelemetry/sdk-trace-base'), path.join(tree, 'plugin'), ...extra];
    const { stdout } = await run(process.execPath, args, { cwd: tree, env: { PATH: process.env.PATH ?? '' } });
    return JSON.parse(stdout.trim().split('\n').at(-1)!) as HostReport;
  }

  it.each(Object.keys(HOSTS))('%s: executions succeed untraced, with one warning naming the host copy\'s version', async (file) => {
    const report = await runHost(file);
    expect(report).toMatchObject({ ok: true, data: { traceparent: null }, logTraceId: null, spans: [] });
    // Before: no warning at all; the host saw no spans and nothing said why.
    expect(report.warnings).toHaveLength(1);
    expect(report.warnings[0]).toContain('KB_PLUGIN_EXECUTION_OTEL');
    expect(report.warnings[0]).toContain('registered through @opentelemetry/api 1.3.0');
  });

  it('a host that registers a meter provider through it as well still gets one warning, not one per provider', async () => {
    const report = await runHost('host.mjs', 'meter');
    expect(report).toMatchObject({ ok: true, spans: [] });
    expect(report.warnings).toHaveLength(1);
    expect(report.warnings[0]).toContain('registered through @opentelemetry/api 1.3.0');
  });
});
