import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocket, type ClientOptions } from 'ws';

export const LAB = '@channels-test/lab';
export const labPlugin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'fixtures/plugins/lab');
export const labManifest = JSON.parse(readFileSync(path.join(labPlugin, 'kb.plugin.json'), 'utf8')) as { id: string };

/** A plain HTTP server on loopback, port chosen by the OS. */
export async function startServer(): Promise<{ server: http.Server; url: (p: string) => string; close: () => Promise<void> }> {
  const server = http.createServer((_req, res) => {
    res.statusCode = 426;
    res.end('upgrade required');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    server,
    url: (p) => `ws://127.0.0.1:${port}${p}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export type Frame = { type: string; [key: string]: unknown };

/** A real ws client that records every frame and lets a test wait for the next one that matches. */
export class TestClient {
  readonly ws: WebSocket;
  readonly frames: Frame[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  #cursor = 0;
  readonly #taken = new Set<number>();
  #waiters: Array<() => void> = [];

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('message', (data, isBinary) => {
      this.frames.push(isBinary ? { type: '(binary)' } : (JSON.parse(data.toString()) as Frame));
      for (const wake of this.#waiters.splice(0)) wake();
    });
    this.closed = new Promise((resolve) => {
      ws.once('close', (code, reason) => {
        resolve({ code, reason: reason.toString() });
        for (const wake of this.#waiters.splice(0)) wake();
      });
    });
    ws.on('error', () => {});
  }

  /** Open a connection; with `ready` (default) also wait for the server's ready frame. */
  static async connect(url: string, options: ClientOptions & { ready?: boolean } = {}): Promise<TestClient> {
    const { ready = true, ...wsOptions } = options;
    const client = new TestClient(new WebSocket(url, wsOptions));
    await new Promise<void>((resolve, reject) => {
      client.ws.once('open', () => resolve());
      client.ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
      client.ws.once('error', reject);
    });
    if (ready) await client.next((f) => f.type === 'ready');
    return client;
  }

  get connectionId(): string {
    const ready = this.frames.find((f) => f.type === 'ready');
    if (!ready) throw new Error('no ready frame yet');
    return ready.connectionId as string;
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** Send `{ id, data }` and wait for the reply or error frame answering it. */
  async request(id: string | number, data: unknown, timeoutMs = 10_000): Promise<Frame> {
    this.send({ id, data });
    return this.next((f) => (f.type === 'reply' || f.type === 'error') && f.replyTo === id, timeoutMs);
  }

  /** The next frame (after those already taken) that matches; frames skipped over stay for `all()`. */
  async next(match: (frame: Frame) => boolean = () => true, timeoutMs = 10_000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (let i = this.#cursor; i < this.frames.length; i++) {
        const frame = this.frames[i]!;
        if (match(frame)) {
          this.#taken.add(i);
          while (this.#taken.has(this.#cursor)) this.#cursor++;
          return frame;
        }
      }
      const left = deadline - Date.now();
      if (left <= 0 || this.ws.readyState === WebSocket.CLOSED) {
        throw new Error(`no matching frame within ${timeoutMs} ms; got ${JSON.stringify(this.frames.slice(-5))}`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  close(code?: number, reason?: string): Promise<{ code: number; reason: string }> {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(code, reason);
    return this.closed;
  }

  terminate(): void {
    this.ws.terminate();
  }
}

/** The HTTP status an upgrade attempt is refused with (or 101 when it is accepted). */
export async function upgradeStatus(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  const ws = new WebSocket(url, { headers });
  return new Promise((resolve, reject) => {
    ws.once('upgrade', () => {
      ws.terminate();
      resolve({ status: 101, body: '' });
    });
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    ws.once('error', (error) => reject(error));
  });
}

/** The status an upgrade with the request target `target` sent as it is (no client's URL parser between) gets from the server at `url`. */
export function rawTargetStatus(url: string, target: string): Promise<number> {
  return rawRequestStatus(url, upgradeRequest(new URL(url), target));
}

/** The status the server at `url` answers the raw HTTP `request` with (0 if none). */
export async function rawRequestStatus(url: string, request: string): Promise<number> {
  return (await rawResponseHead(url, request)).status;
}

/** The status and header lines the server at `url` answers the raw HTTP `request` with. */
export async function rawResponseHead(url: string, request: string): Promise<{ status: number; headers: string[] }> {
  const server = new URL(url);
  const socket = net.connect({ port: Number(server.port), host: server.hostname });
  socket.on('error', () => undefined);
  // One byte per character, as a raw client may send (a no-break space is the byte 0xA0).
  socket.write(Buffer.from(request, 'latin1'));
  let received = '';
  for await (const chunk of socket) {
    received += (chunk as Buffer).toString('latin1');
    if (received.includes('\r\n\r\n')) break;
  }
  socket.destroy();
  const [first = '', ...headers] = received.split('\r\n\r\n')[0]!.split('\r\n');
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(first)?.[1] ?? 0), headers };
}

/** Poll until `check` holds (for state the server changes asynchronously), or fail naming `what`. */
export async function eventually(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Host services for the lab plugin: `gate.wait(name)` blocks until the test opens the gate,
 * `gate.enter(n)` just records; `events.record(e)` collects what disconnect handlers report.
 */
export function labPlatform() {
  const gates = new Map<string, { promise: Promise<void>; open: () => void }>();
  const gate = (name: string) => {
    let entry = gates.get(name);
    if (!entry) {
      let open!: () => void;
      const promise = new Promise<void>((resolve) => (open = resolve));
      entry = { promise, open };
      gates.set(name, entry);
    }
    return entry;
  };
  const entered: unknown[] = [];
  const events: Array<Record<string, unknown>> = [];
  return {
    entered,
    events,
    open: (name: string) => gate(name).open(),
    openAll: () => {
      for (const g of gates.values()) g.open();
    },
    platform: {
      gate: {
        async wait(name: string, n: unknown) {
          entered.push(n);
          await gate(name).promise;
        },
        async enter(n: unknown) {
          entered.push(n);
        },
      },
      events: {
        async record(event: Record<string, unknown>) {
          events.push(event);
        },
      },
    },
  };
}

/** The upgrade request of a client that speaks WebSocket over a raw socket (rawClient); `target` as sent (absolute-form, say). */
function upgradeRequest(url: URL, target = url.pathname): string {
  return `GET ${target} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;
}

/**
 * A client on a raw socket: sends the upgrade to `url` and, in the same write, `frames` (as a
 * hostile client may); then reads what comes (the 101, frames, the server's close) and never
 * answers the close. `closed` settles when its socket closes.
 */
export function rawClient(url: string, ...frames: Buffer[]): { socket: net.Socket; received: () => string; closed: Promise<void> } {
  return halfOpenRawClient(url, false, ...frames);
}

/** rawClient, whose socket stays open for writing once the server ends its side (`allowHalfOpen`), when `halfOpen`. */
export function halfOpenRawClient(url: string, halfOpen: boolean, ...frames: Buffer[]): { socket: net.Socket; received: () => string; closed: Promise<void> } {
  const target = new URL(url);
  const socket = net.connect({ port: Number(target.port), host: target.hostname, allowHalfOpen: halfOpen });
  socket.write(Buffer.concat([Buffer.from(upgradeRequest(target)), ...frames]));
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, received: () => received, closed };
}

/** A masked client frame (FIN set) of `opcode` (1 text) with `payload`, or only its header claiming `length` bytes. */
export function clientFrame(opcode: number, payload: Buffer, length = payload.length): Buffer {
  const mask = Buffer.alloc(4);
  const size = length < 126 ? Buffer.from([0x80 | length]) : length < 65_536 ? Buffer.from([0x80 | 126, length >> 8, length & 0xff]) : Buffer.concat([Buffer.from([0x80 | 127]), bigEndian64(length)]);
  return Buffer.concat([Buffer.from([0x80 | opcode]), size, mask, payload]);
}

function bigEndian64(n: number): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(BigInt(n));
  return out;
}
