// The test harness itself (scripts/nats-server.mjs): real nats-server processes, raw TCP.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { startNatsServer, type NatsServer } from '../../../scripts/nats-server.mjs';

const harness = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../scripts/nats-server.mjs');

interface ServerInfo {
  port: number;
  max_payload: number;
  jetstream?: boolean;
  server_name: string;
}

/** Connect, read the server's first protocol line (`INFO {...}`), hang up. */
function readInfo(port: number): Promise<ServerInfo> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let buffered = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      const end = buffered.indexOf('\r\n');
      if (end < 0) return;
      socket.destroy();
      const line = buffered.slice(0, end);
      if (!line.startsWith('INFO ')) reject(new Error(`expected INFO, got ${line}`));
      else resolve(JSON.parse(line.slice(5)) as ServerInfo);
    });
    socket.on('error', reject);
  });
}

/** Alive and not a zombie (a container's init may never reap what it inherits). */
function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  if (process.platform !== 'linux') return true;
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

async function until(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}

const started: NatsServer[] = [];
async function start(options?: Parameters<typeof startNatsServer>[0]): Promise<NatsServer> {
  const server = await startNatsServer(options);
  started.push(server);
  return server;
}
afterEach(async () => {
  await Promise.all(started.splice(0).map((server) => server.stop()));
});

describe('nats-server harness', () => {
  it('the global setup provides a running server', async () => {
    const url = inject('natsUrl');
    expect(url).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
    const info = await readInfo(Number(new URL(url).port));
    expect(info.jetstream).toBe(true);
    expect(info.max_payload).toBe(8 * 1024 * 1024);
  });

  it('starts on a free loopback port with JetStream and the max_payload asked for', async () => {
    const server = await start({ maxPayload: '4MB' });
    expect(server.url).toBe(`nats://127.0.0.1:${server.port}`);
    expect(running(server.pid)).toBe(true);
    const info = await readInfo(server.port);
    expect(info).toMatchObject({ port: server.port, max_payload: 4 * 1024 * 1024, jetstream: true });
    expect(readFileSync(server.configFile, 'utf8')).toContain(`listen: 127.0.0.1:${server.port}`);
  });

  it('restart() comes back on the same port as the same server, with its store, under a new pid', async () => {
    const server = await start();
    const before = await readInfo(server.port);
    const firstPid = server.pid;
    await server.restart({ downtimeMs: 50 });
    expect(running(firstPid)).toBe(false);
    expect(server.pid).not.toBe(firstPid);
    const after = await readInfo(server.port);
    expect(after.port).toBe(server.port);
    expect(after.server_name).toBe(before.server_name);
    expect(existsSync(path.join(server.storeDir, 'jetstream'))).toBe(true);
  });

  it('stop() leaves no process and no temp dir, and can be called twice', async () => {
    const server = await start();
    const { pid, configFile } = server;
    await server.stop();
    expect(running(pid)).toBe(false);
    expect(existsSync(path.dirname(configFile))).toBe(false);
    await server.stop();
  });

  it('a fixed port already taken fails with the server\'s own words', async () => {
    const server = await start();
    await expect(startNatsServer({ port: server.port })).rejects.toThrow(/address already in use/);
  });

  it('a missing binary fails with how to install it', async () => {
    const saved = process.env.NATS_SERVER_BIN;
    process.env.NATS_SERVER_BIN = path.join(path.dirname(harness), 'no-such-nats-server');
    try {
      await expect(startNatsServer()).rejects.toThrow(/apt-get install nats-server/);
    } finally {
      if (saved === undefined) delete process.env.NATS_SERVER_BIN;
      else process.env.NATS_SERVER_BIN = saved;
    }
  });

  it('a parent that exits without stop() takes its server and temp dir along', async () => {
    const { pid, conf, exited } = await runParent(`const s = await startNatsServer(); console.log(JSON.stringify({ pid: s.pid, conf: s.configFile }));`);
    expect(await exited).toBe(0);
    expect(await until(() => !running(pid), 5_000)).toBe(true);
    expect(existsSync(path.dirname(conf))).toBe(false);
  });

  it.runIf(process.platform === 'linux')('a parent killed with SIGKILL takes its server along', async () => {
    const { pid, conf, child } = await runParent(
      `const s = await startNatsServer(); console.log(JSON.stringify({ pid: s.pid, conf: s.configFile })); setInterval(() => {}, 1000);`,
      { keep: true },
    );
    child!.kill('SIGKILL');
    expect(await until(() => !running(pid), 5_000)).toBe(true);
    // Nothing could remove the temp dir of a SIGKILLed parent.
    rmSync(path.dirname(conf), { recursive: true, force: true });
  });
});

/** A Node process that runs `body` with startNatsServer in scope and prints the server's pid. */
async function runParent(body: string, { keep = false } = {}) {
  const script = `import { startNatsServer } from ${JSON.stringify(pathToFileURL(harness).href)};\n${body}`;
  // An explicit environment: the harness needs PATH (and NATS_SERVER_BIN if set) only.
  const env: Record<string, string> = { PATH: process.env.PATH ?? '' };
  if (process.env.NATS_SERVER_BIN) env.NATS_SERVER_BIN = process.env.NATS_SERVER_BIN;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const line = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', () => stdout.includes('\n') && resolve(stdout.split('\n')[0]!));
    child.on('exit', (code) => (stdout.includes('\n') ? resolve(stdout.split('\n')[0]!) : reject(new Error(`parent exited ${code}: ${stderr}`))));
  });
  const { pid, conf } = JSON.parse(line) as { pid: number; conf: string };
  return { pid, conf, exited, child: keep ? child : undefined };
}
