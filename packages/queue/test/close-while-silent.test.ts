/**
 * A host or worker closed while its connection is being made again to a server that accepts
 * connections and says nothing (a stopped server, a half-open link): shutdown() and close()
 * resolve, and the process that embeds it ends by itself, not once that server speaks again; so
 * does one whose first connection timed out against such a server, or one that answers no SYN.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { fixturePlugins, waitFor } from '@kb-labs/plugin-execution-conformance';
import { describe, expect, it } from 'vitest';
import { startNatsServer } from '../../../scripts/nats-server.mjs';
import { embeddingProcess, sleep } from './chaos-kit.js';

/** Past the 10 to 15 s of silence after which the client drops its connection and dials again (each dial waits up to 5 s for the stopped server). */
const RECONNECTING_AFTER_MS = 17_000;

describe('closed while reconnecting to a silent server', () => {
  for (const role of ['host', 'worker'] as const) {
    it(`a ${role}'s process ends by itself, without waiting for the server to speak again`, async () => {
      const own = await startNatsServer();
      const { child, said, exited } = embeddingProcess('close-while-silent.mjs', [role, own.url, fixturePlugins.basic]);
      try {
        await waitFor(() => said().includes('ready'), 15_000);
        process.kill(own.pid, 'SIGSTOP');
        await sleep(RECONNECTING_AFTER_MS);
        child.stdin.write('close\n');
        const ended = await Promise.race([exited, sleep(10_000).then(() => 'still running')]);
        expect(ended, said()).toBe(0);
        expect(said()).toContain('closed');
      } finally {
        child.kill('SIGKILL');
        process.kill(own.pid, 'SIGCONT');
        await own.stop();
      }
    }, 60_000);
  }
});

/** Something at the server's address that accepts connections and says nothing, or that answers no SYN at all. */
interface SilentPeer {
  url: string;
  close(): void;
}

/** A listener that takes each connection and never speaks (a NATS port behind a stopped server, not a NATS port). */
async function acceptsAndSaysNothing(): Promise<SilentPeer> {
  const sockets = new Set<net.Socket>();
  const listener = net.createServer((socket) => sockets.add(socket));
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  return {
    url: `nats://127.0.0.1:${(listener.address() as AddressInfo).port}`,
    close: () => {
      for (const socket of sockets) socket.destroy();
      listener.close();
    },
  };
}

/** A stopped process's listener whose accept queue is full: the kernel drops every further SYN, so a connection is never made, nor refused. */
async function answersNoSyn(): Promise<SilentPeer> {
  const listening = spawn(process.execPath, ['-e', "const s = require('node:net').createServer(); s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => console.log(s.address().port))"], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [port] = (await once(listening.stdout, 'data')) as [Buffer];
  process.kill(listening.pid!, 'SIGSTOP');
  const url = `nats://127.0.0.1:${Number(port.toString())}`;
  const fillers = Array.from({ length: 4 }, () => net.connect(Number(port.toString()), '127.0.0.1').on('error', () => undefined));
  // The accept queue is full once a connection stays unanswered.
  const probe = net.connect(Number(port.toString()), '127.0.0.1').on('error', () => undefined);
  await sleep(500);
  expect(probe.connecting, 'a connection past the full accept queue stays unanswered').toBe(true);
  probe.destroy();
  return {
    url,
    close: () => {
      for (const filler of fillers) filler.destroy();
      listening.kill('SIGKILL');
    },
  };
}

describe('a first connection that times out', () => {
  const peers = {
    'accepts and says nothing': { start: acceptsAndSaysNothing, said: 'what answers there accepted the connection but said nothing in 5 s', mode: [] },
    'answers no SYN': { start: answersNoSyn, said: 'nothing answered the connection in 5 s (no reply to its SYN, neither an acceptance nor a refusal)', mode: [] },
    // The TLS socket tls.connect dials itself is on no channel of Node's (before: the process stayed up).
    'accepts and says nothing, the connection beginning with TLS (handshakeFirst)': { start: acceptsAndSaysNothing, said: 'what answers there accepted the connection but said nothing in 5 s', mode: ['tls-first'] },
  };
  for (const [kind, { start, said: reason, mode }] of Object.entries(peers)) {
    for (const role of ['host', 'worker'] as const) {
      it(`against something that ${kind}: a ${role} reports it, naming the server, and its process ends by itself`, async () => {
        const peer = await start();
        const { child, said, exited } = embeddingProcess('first-connect-silent.mjs', [role, peer.url, fixturePlugins.basic, ...mode]);
        try {
          // The attempt gives up after 5 s and its look at the server takes 1 s more.
          await waitFor(() => said().includes('closed'), 15_000);
          const failure = role === 'host' ? `WORKER_CRASHED: The queue backend could not connect to the NATS server (${peer.url}): ${reason}` : `unreachable: The worker could not connect to the NATS server (${peer.url}): ${reason}`;
          expect(said()).toContain(failure);
          const ended = await Promise.race([exited, sleep(5_000).then(() => 'still running')]);
          expect(ended, said()).toBe(0);
        } finally {
          child.kill('SIGKILL');
          peer.close();
        }
      }, 30_000);
    }
  }
});
