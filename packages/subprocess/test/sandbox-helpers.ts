import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import path from 'node:path';
import { fixturesDir } from './helpers.js';

/** A host script (fixtures/*.mjs) run with `node`, printing one JSON object per stdout line. */
export interface HostProcess {
  child: ChildProcess;
  /** Every JSON line printed so far. */
  lines: Record<string, unknown>[];
  /** The first line with `key`, or a line with `error`, or undefined when the host exits or time runs out first. */
  waitFor(key: string, timeoutMs: number): Promise<Record<string, unknown> | undefined>;
  /** Resolves once the host has exited. */
  exited: Promise<void>;
  stderr(): string;
}

/**
 * Starts `fixtures/<script>` with an explicit minimal env (PATH only: nothing of this test
 * process's environment reaches it) and `config` as JSON in argv[2]. `launcher`: a command that
 * sets something up and then runs the host (`exec`s the command line it is given after its own).
 */
export function startHost(script: string, config: unknown, stdio: StdioOptions = ['ignore', 'pipe', 'pipe'], launcher: string[] = []): HostProcess {
  const command = [...launcher, process.execPath, path.join(fixturesDir, script), JSON.stringify(config)];
  const child = spawn(command[0]!, command.slice(1), { stdio, env: process.env.PATH ? { PATH: process.env.PATH } : {} });
  const lines: Record<string, unknown>[] = [];
  let pending = '';
  let stderr = '';
  const listeners = new Set<() => void>();
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    pending += chunk;
    for (let at = pending.indexOf('\n'); at >= 0; at = pending.indexOf('\n')) {
      const line = pending.slice(0, at);
      pending = pending.slice(at + 1);
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        lines.push({ unparsed: line });
      }
    }
    for (const listener of listeners) listener();
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-8000);
  });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const waitFor = (key: string, timeoutMs: number) =>
    new Promise<Record<string, unknown> | undefined>((resolve) => {
      const look = () => {
        const line = lines.find((l) => key in l || 'error' in l);
        if (line) finish(line);
      };
      const finish = (line: Record<string, unknown> | undefined) => {
        clearTimeout(timer);
        listeners.delete(look);
        resolve(line);
      };
      const timer = setTimeout(() => finish(undefined), timeoutMs);
      listeners.add(look);
      void exited.then(() => setImmediate(() => finish(lines.find((l) => key in l || 'error' in l))));
      look();
    });
  return { child, lines, waitFor, exited, stderr: () => stderr };
}

/** The message a test fails with when a host did not say what it was waiting for. */
export function hostFailure(host: HostProcess, waitingFor: string): string {
  return `host did not report ${waitingFor}; lines: ${JSON.stringify(host.lines)}; exit ${host.child.exitCode ?? host.child.signalCode}; stderr: ${host.stderr()}`;
}
