#!/usr/bin/env node
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { PluginRegistry, WorkspaceManager, serializeError, type LogEntry } from '@kb-labs/plugin-execution-core';
import type { BuiltInBackendType } from './backend-loaders.js';
import { createExecutionBackend } from './create-execution-backend.js';
import { WORKER_USAGE, WorkerUsageError, runWorkerCommand } from './worker-command.js';

const USAGE = `Usage:
  kb-plugin-exec run <plugin-dir> <handler> [options]
  kb-plugin-exec sweep --workspace-root <dir>
  kb-plugin-exec worker --nats <url> --plugins <dir> [<dir> …] [options]   (see: worker --help)

Runs one handler of the plugin in <plugin-dir> (a folder with kb.plugin.json) and prints the
result as JSON on stdout. Exits 0 on success; on failure prints "<CODE>: <message>" on stderr
and exits 1 (2 for a usage error).

Options for run:
  --backend <type>          in-process | worker-pool | subprocess | queue   (default: in-process)
  --nats <url>              queue: the NATS server(s), comma-separated     (default: nats://127.0.0.1:4222)
  --pool <name>             queue: the worker pool                         (default: default)
  --input <json|@file>      handler input                            (default: none)
  --context <json|@file>    context descriptor                       (default: { host: { kind: "cli" } })
  --grant <json|@file>      permissions granted to the handler       (default: none)
  --timeout <ms>            time limit                               (default: manifest, else 30000)
  --workspace-root <dir>    where execution directories go           (default: OS temp dir)
  --no-workspace            run without a workspace directory
  --keep-workspace          keep the workspace and print its path in meta
  --logs                    print the handler's log lines on stderr
  -h, --help                show this help
`;

async function readJson(value: string | undefined, what: string): Promise<unknown> {
  if (value === undefined) return undefined;
  const text = value.startsWith('@') ? await readFile(value.slice(1), 'utf8') : value;
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new UsageError(`--${what} is not valid JSON: ${(error as Error).message}`);
  }
}

class UsageError extends Error {}

const RUN_OPTIONS = {
  backend: { type: 'string' },
  nats: { type: 'string' },
  pool: { type: 'string' },
  input: { type: 'string' },
  context: { type: 'string' },
  grant: { type: 'string' },
  timeout: { type: 'string' },
  'workspace-root': { type: 'string' },
  'no-workspace': { type: 'boolean' },
  'keep-workspace': { type: 'boolean' },
  logs: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

type RunValues = ReturnType<typeof parseArgs<{ args: string[]; allowPositionals: true; options: typeof RUN_OPTIONS }>>['values'];

async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'worker') return runWorkerCommand(argv.slice(1));
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: RUN_OPTIONS });
  const [command, ...rest] = positionals;
  if (values.help || !command) {
    process.stdout.write(USAGE);
    return values.help ? 0 : 2;
  }
  if (command === 'sweep') return sweepCommand(values['workspace-root']);
  if (command !== 'run') throw new UsageError(`unknown command "${command}"`);
  const [pluginDir, handlerId] = rest;
  if (!pluginDir || !handlerId) throw new UsageError('run needs <plugin-dir> and <handler>');
  return runCommand(pluginDir, handlerId, values, argv);
}

async function sweepCommand(root: string | undefined): Promise<number> {
  if (!root) throw new UsageError('sweep needs --workspace-root <dir>');
  const result = await new WorkspaceManager({ root }).sweep();
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  return result.failed.length ? 1 : 0;
}

/** `run`: one execution on a backend made for it, the result on stdout; exit 1 on failure. */
async function runCommand(pluginDir: string, handlerId: string, values: RunValues, argv: string[]): Promise<number> {
  const type = (values.backend ?? 'in-process') as BuiltInBackendType;
  if (type !== 'queue' && (values.nats || values.pool)) throw new UsageError('--nats and --pool are for --backend queue');
  const queue = type === 'queue' ? { ...(values.nats ? { connection: { servers: values.nats.split(',') } } : {}), ...(values.pool ? { pool: values.pool } : {}) } : {};
  const timeoutMs = values.timeout === undefined ? undefined : Number(values.timeout);
  if (timeoutMs !== undefined && !(Number.isFinite(timeoutMs) && timeoutMs > 0)) throw new UsageError('--timeout must be a positive number of milliseconds');

  const registry = new PluginRegistry();
  const plugin = await registry.load(pluginDir);
  const backend = createExecutionBackend({
    type,
    registry,
    workspace: values['no-workspace'] ? false : values['workspace-root'] ? { root: values['workspace-root'] } : undefined,
    ...(values.grant ? { permissions: (await readJson(values.grant, 'grant')) as never } : {}),
    ...queue,
  });
  try {
    const context = ((await readJson(values.context, 'context')) ?? { host: { kind: 'cli', argv } }) as Record<string, unknown>;
    const result = await backend.execute(
      { pluginId: plugin.id, handlerId, input: await readJson(values.input, 'input'), context },
      {
        ...(timeoutMs ? { timeoutMs } : {}),
        ...(values['keep-workspace'] ? { keepWorkspace: true } : {}),
        ...(values.logs ? { onLog: (entry: LogEntry) => process.stderr.write(`[${entry.stream}:${entry.level}] ${entry.message}\n`) } : {}),
      },
    );
    const printable = result.ok ? result : { ...result, error: serializeError(result.error) };
    process.stdout.write(`${JSON.stringify(printable, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v), 2)}\n`);
    if (!result.ok) {
      process.stderr.write(`${result.error.code}: ${result.error.message}\n`);
      return 1;
    }
    return 0;
  } finally {
    await backend.shutdown({ timeoutMs: 2000 });
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof UsageError || error instanceof WorkerUsageError || (error as { code?: string })?.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      process.stderr.write(`${(error as Error).message}\n\n${process.argv[2] === 'worker' ? WORKER_USAGE : USAGE}`);
      process.exitCode = 2;
      return;
    }
    const e = error as { code?: string; message?: string };
    process.stderr.write(`${e?.code ?? 'ERROR'}: ${e?.message ?? String(error)}\n`);
    process.exitCode = 1;
  },
);
