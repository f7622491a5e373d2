import { createConnection } from 'node:net';
import { clearTimeout, setTimeout } from '@kb-labs/plugin-execution-core/backend-kit';
import { parseServerUrl, serverHost, withoutCredentials } from './server-url.js';

/** How long the first connection attempt may take before it fails. */
export const CONNECT_TIMEOUT_MS = 5000;
/** How long the look at a server whose connection timed out waits for its first words. */
const PROBE_MS = 1000;
/** A NATS server sends its INFO at once; one silent this long is poked (an HTTP server then answers). */
const PROBE_POKE_MS = 300;

/**
 * What a server whose connection failed says when connected to: a NATS server's error right
 * after its INFO (e.g. "maximum connections exceeded"), or that it is not a NATS server (its first
 * bytes, e.g. an HTTP answer from the monitoring port, or that it closed the connection without a
 * word). Undefined when it says nothing, or cannot be reached.
 */
export function whatServerSays(url: string): Promise<string | undefined> {
  return lookAt(url, () => undefined);
}

/**
 * What each of several servers did when looked at again, all at once (each within the look's
 * bound), each named by its URL without credentials: nats.js says only what the last server it
 * tried did. Undefined when none says anything (each answers as a NATS server would).
 */
export async function whatServersSay(urls: string[]): Promise<string | undefined> {
  const said = await Promise.all(urls.map((url) => lookAt(url, (code) => `nothing takes connections there (${code})`)));
  if (said.every((words) => words === undefined)) return undefined;
  return urls.map((url, i) => `${withoutCredentials(url)}: ${said[i] ?? 'a NATS server answered when looked at again'}`).join('; ');
}

/** whatServerSays, saying `unreached(code)` of a server whose connection failed before it was accepted (refused, no such host). */
function lookAt(url: string, unreached: (code: string) => string | undefined): Promise<string | undefined> {
  const address = parseServerUrl(url);
  if (address === undefined) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    let heard = '';
    let connected = false;
    const socket = createConnection({ host: serverHost(url), port: Number(address.port || 4222) }, () => (connected = true));
    const verdict = () => (heard.length > 0 && !heard.startsWith('INFO ') ? notNats(heard) : undefined);
    // Accepted, then closed (or reset) before a word: a NATS server sends its INFO first.
    const ended = () => (connected && heard.length === 0 ? CLOSED_AT_ONCE : verdict());
    const done = (said: string | undefined) => {
      clearTimeout(poke);
      clearTimeout(timer);
      socket.destroy();
      resolve(said);
    };
    const poke = setTimeout(() => heard || socket.write('PING\r\n'), PROBE_POKE_MS);
    // Accepted, and silent all along (and through the probe's own second); or not even accepted.
    const timer = setTimeout(() => done(!connected ? UNANSWERED : heard.length === 0 ? SILENT : verdict()), PROBE_MS);
    socket.on('data', (chunk: Buffer) => {
      heard += chunk.toString('latin1');
      const refusal = /^-ERR '?([^'\r\n]*)'?/m.exec(heard);
      if (refusal && heard.startsWith('INFO ')) done(`the server refused the connection: ${refusal[1]}`);
      else if (heard.length >= 5 && !heard.startsWith('INFO ')) done(verdict());
    });
    socket.on('error', (error: NodeJS.ErrnoException) => done(connected ? ended() : unreached(error.code ?? error.message)));
    socket.on('close', () => done(ended()));
  });
}

const CLOSED_AT_ONCE =
  'what answers there closed the connection without a word, where a NATS server first sends its INFO: check the host and port ' +
  '(a NATS client port, 4222 by default), and any proxy or load balancer in front of the server (one with no server behind it does this)';

const SILENT =
  `what answers there accepted the connection but said nothing in ${CONNECT_TIMEOUT_MS / 1000} s, where a NATS server first sends its INFO: ` +
  'the server may be stopped or overloaded, or this is not a NATS port (check the host and port: a NATS client port, 4222 by default)';

const UNANSWERED =
  `nothing answered the connection in ${CONNECT_TIMEOUT_MS / 1000} s (no reply to its SYN, neither an acceptance nor a refusal): ` +
  "the server's machine may be down or unreachable, a firewall may drop the packets, or the server takes no more connections (check the host and port)";

function notNats(heard: string): string {
  const first = heard.split(/\r?\n/, 1)[0]!.replace(/[^\x20-\x7e]/g, '?').slice(0, 60);
  return `what answers there is not a NATS server (its first words: "${first}"): check the host and port (a NATS client port, 4222 by default, not the monitoring port)`;
}
