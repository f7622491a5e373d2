import { constants, readFileSync } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import { connect, credsAuthenticator, nkeyAuthenticator, type Authenticator, type Msg, type NatsConnection, type Status } from '@nats-io/transport-node';
import { isIP } from 'node:net';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import type { NatsConnectionOptions } from './connection-options.js';
import { serverHost, withoutCredentials } from './server-url.js';
import { CONNECT_TIMEOUT_MS, whatServerSays, whatServersSay } from './server-probe.js';
import { closingSocketsOnFailure } from './attempt-sockets.js';

export type { NatsConnectionOptions } from './connection-options.js';

/** The client pings the server this often, and drops a connection after two pings go unanswered. */
const PING_INTERVAL_MS = 5000;
const MAX_PINGS_OUT = 2;
/**
 * How long a connection may be silent before it is dropped and made again (nats.js's default is
 * 4 to 6 minutes): a link cut without a reset, or a server machine gone, on either side.
 */
export const SILENT_CONNECTION_DROPPED = `after ${(PING_INTERVAL_MS * MAX_PINGS_OUT) / 1000} to ${(PING_INTERVAL_MS * (MAX_PINGS_OUT + 1)) / 1000} s of silence`;

/**
 * Close a connection once what was published this turn has gone out: nats.js writes its buffer in
 * a microtask, and one that runs after the close writes to an ended socket, an uncaught exception
 * in the process (seen when a start failed just after publishing its presence).
 */
export async function closeConnection(nc: NatsConnection): Promise<void> {
  await nextTurn();
  await nc.close().catch(() => undefined);
  discardDial(nc);
}

/** What closeConnection reaches of nats.js's protocol (3.4): its transport, and the reconnection loop in progress. */
interface DialingProtocol {
  transport?: { discard?: () => void };
  connectPromise?: Promise<void> | null;
}

/**
 * nats.js (3.4) closes a transport only once it has connected: a reconnection attempt in progress
 * at the close, against a server that took the connection and says nothing (stopped with SIGSTOP,
 * a half-open link), keeps its socket open until that server speaks or closes it, and with it the
 * process. Discard that transport now, and whatever the reconnection loop dials before it notices
 * the close (it ends within one connect timeout).
 */
function discardDial(nc: NatsConnection): void {
  const protocol = (nc as unknown as { protocol?: DialingProtocol }).protocol;
  if (!protocol) return;
  const discard = () => {
    try {
      protocol.transport?.discard?.();
    } catch {
      // Already gone.
    }
  };
  discard();
  void protocol.connectPromise?.then(discard, discard);
}

/**
 * Connect with reconnection for ever: a server restart is a pause, not the end of a host or
 * worker (what was in flight when it went is failed by the backend, not by the client). A first
 * attempt that fails as no NATS server would is explained by one more look at the server, while
 * `wanted()`.
 */
export async function connectNats(options: NatsConnectionOptions, defaultName: string, inboxPrefix: string, wanted: () => boolean = () => true): Promise<NatsConnection> {
  try {
    const nc = await closingSocketsOnFailure((failed) => connectOnce(options, defaultName, inboxPrefix, failed));
    const most = nc.info?.max_payload;
    if (most !== undefined && most < MIN_SERVER_PAYLOAD) {
      await closeConnection(nc);
      throw new Error(
        `The NATS server takes messages of at most ${most} bytes (its max_payload); the queue backend needs at least ${MIN_SERVER_PAYLOAD} (JetStream's own requests are larger than that; NATS's default is 1 MB): raise max_payload in the server's configuration`,
      );
    }
    inboxPrefixes.set(nc, inboxPrefix);
    return nc;
  } catch (error) {
    // nats.js times out on a server that answered but refused the connection (its
    // max_connections reached), and on something that is not a NATS server at all; of one that
    // closes at once or sends something else, it says only "node provided an undefined error"
    // or "unexpected response from server".
    // Of several servers, nats.js says only what the last one it tried did ("connection refused"), not what took the time.
    const servers = serverList(options);
    const several = servers.length > 1 && CONNECTION_REFUSED.test(messageOf(error));
    if ((error as Error)?.name !== 'TimeoutError' && !NOT_NATS_ERROR.test(messageOf(error)) && !several) throw error;
    // Given up on by its owner (a backend shut down meanwhile): no further connection to ask why.
    if (!wanted()) throw error;
    const said = servers.length > 1 ? await whatServersSay(servers) : await whatServerSays(servers[0]!);
    throw said ? new Error(said, { cause: error }) : error;
  }
}

/** The least `max_payload` a server may have: below it JetStream's API requests (the stream's, the consumer's) do not fit. Larger bodies travel in parts. */
const MIN_SERVER_PAYLOAD = 1024;

/** What nats.js says of a connection that the other end closed before its INFO, or that began with something else. */
const NOT_NATS_ERROR = /node provided an undefined error|unexpected response from server/i;
/** What nats.js says of a server that refused the TCP connection. */
const CONNECTION_REFUSED = /connection refused/i;

/** Whether the server answers a ping within `waitMs` (a stream read that timed out then is the stream's silence, not the link's). */
export function serverAnswers(nc: NatsConnection, waitMs = 1000): Promise<boolean> {
  return Promise.race([nc.flush().then(() => true, () => false), sleep(waitMs, false, { ref: false })]);
}

/**
 * Whether a peer's message may be taken: one asking for an answer anywhere but an inbox is not a
 * host's or a worker's (their requests all answer to their `_INBOX.` prefix), and answering it
 * would publish, as this user, to a subject the sender chose (`$JS.API.STREAM.DELETE.<any>`:
 * `allow_responses` permits an answer wherever the request says).
 */
export function fromPeer(msg: Msg): boolean {
  return msg.reply === undefined || msg.reply === '' || msg.reply.startsWith('_INBOX.');
}

/** Each connection's inbox prefix (PoolSubjects.inbox): where the answers to its requests come. */
const inboxPrefixes = new WeakMap<NatsConnection, string>();

/** The prefix of `nc`'s inboxes, for requests made outside nats.js's own (ReplyInbox, TaskPuller). */
export function inboxPrefixOf(nc: NatsConnection): string | undefined {
  return inboxPrefixes.get(nc);
}

/** `failed`: aborted if this first attempt fails, destroying a TLS socket it dialled (closingSocketsOnFailure). */
async function connectOnce(options: NatsConnectionOptions, defaultName: string, inboxPrefix: string, failed: AbortSignal): Promise<NatsConnection> {
  const authenticator: Authenticator[] = [];
  // Read from a file, a seed keeps its line break: not part of it.
  if (options.seed) authenticator.push(nkeyAuthenticator(new TextEncoder().encode(options.seed.trim())));
  if (options.credsFile) authenticator.push(credsAuthenticator(await credsReader(options.credsFile)));
  // nats.js reads the seed (or the creds file's) only once a server answers: one that is none would
  // be said after a connection, or, with no server, never (the connection's failure said instead).
  for (const authenticate of authenticator) authenticate();
  // Read by nats.js only once a server asks for TLS: one that does not would hide a wrong path.
  for (const key of ['caFile', 'certFile', 'keyFile'] as const) if (options.tls?.[key]) await unreadable(options.tls[key], `connection.tls.${key}`);
  return connect({
    servers: options.servers ?? 'nats://127.0.0.1:4222',
    ...(options.user !== undefined ? { user: options.user, pass: options.pass ?? '' } : {}),
    ...(options.token !== undefined ? { token: options.token } : {}),
    ...(authenticator.length ? { authenticator } : {}),
    // nats.js goes by what the server's INFO asks, whatever the URL says: a `tls://` URL would
    // send the password and every input in clear to a server (or a man in the middle) that does
    // not ask for TLS. Given any `tls` option, nats.js insists on TLS.
    ...(options.tls || saysTls(options) ? { tls: { ...options.tls, ...ipServerCheck(options), ...destroyedOn(failed) } } : {}),
    name: options.name ?? defaultName,
    // The pool's and the role's own, not `_INBOX`: a user may subscribe to its own answers only (docs/backends/queue.md, "Security").
    inboxPrefix,
    timeout: CONNECT_TIMEOUT_MS,
    maxReconnectAttempts: -1,
    // Not given up after two refused logins in a row: a server restarted with a user missing from
    // its config, or a credentials rotation half done, is a pause too (the refusals are said: onStatus).
    ignoreAuthErrorAbort: true,
    reconnectTimeWait: 250,
    pingInterval: PING_INTERVAL_MS,
    maxPingOut: MAX_PINGS_OUT,
    // Not an Error (with its stack) made up front for every request: ~9 % of a host's and a
    // worker's CPU per execution in a profile. Our requests fail with messages of their own.
    noAsyncTraces: true,
  });
}

export const SUBSCRIPTION_LIMIT = /maximum subscriptions exceeded/i;

/**
 * What JetStream's API says, through a connection that is up, when the pool's stream does not
 * answer: nats.js's bare "timeout", or the server's words for a stream whose server is down or
 * whose cluster has no quorum (a JetStream cluster; a single server says them while it starts).
 */
export const STREAM_SILENT = /^\s*timeout\s*$|stream is offline|temporarily unavailable/i;

/** What a server says of a login it refuses (a user, password, token or key it does not take). */
export const LOGIN_REFUSED = /authorization violation|authentication/i;

/**
 * The last token of a subject a host or worker publishes to at start, where nobody listens, so
 * that a user who may not publish there is told at once (confirmSubscriptions), not by executions
 * that wait out their time limits.
 */
export const PERMISSION_PROBE = 'kb-permission-probe';

/**
 * The server refusing one of a connection's subscriptions (its user may not subscribe there, or
 * its max_subscriptions is reached), or a publish its user may not make: nats.js says so only as
 * an `error` status, and the subscription is left to wait for ever (the publish, lost).
 */
export function refusedByPermissions(status: Status): Error | undefined {
  if (status.type !== 'error') return undefined;
  const { error } = status;
  const refused = SUBSCRIPTION_LIMIT.test(error.message) || NOT_ALLOWED.test(error.message);
  return refused ? error : undefined;
}

/**
 * Subscriptions just made, and publishes to the subjects a side will publish to (PERMISSION_PROBE):
 * throws what the server refused of them (`refused()`, as the connection's status watch recorded
 * it); its answer to a ping comes after any refusal.
 */
export async function confirmSubscriptions(nc: NatsConnection, refused: () => Error | undefined): Promise<void> {
  await nc.flush();
  // The status watch reads the refusal a few turns after nats.js queued it.
  await nextTurn();
  const error = refused();
  if (error) throw error;
}

function serverList(options: NatsConnectionOptions): string[] {
  const servers = options.servers ?? 'nats://127.0.0.1:4222';
  return Array.isArray(servers) ? servers : [servers];
}

/** The TLS option (passed on by nats.js to Node's tls.connect, though its type does not name it) that destroys a socket when `signal` aborts. */
function destroyedOn(signal: AbortSignal): { signal: AbortSignal } {
  return { signal };
}

/**
 * nats.js (3.4) gives Node no server name for a server given by IP address, and Node then checks
 * its certificate against "localhost": one naming the server's address was refused, one naming
 * "localhost" taken from any address. The check of such a certificate, against the addresses given.
 */
function ipServerCheck(options: NatsConnectionOptions): { checkServerIdentity?: (host: string, cert: PeerCertificate) => Error | undefined } {
  const hosts = serverList(options).map(serverHost);
  const addresses = hosts.filter((host) => isIP(host) !== 0);
  if (addresses.length === 0) return {};
  const names = hosts.includes('localhost') ? [...addresses, 'localhost'] : addresses;
  return {
    checkServerIdentity: (host, cert) => {
      if (host !== 'localhost') return checkServerIdentity(host, cert);
      const refusals = names.map((name) => checkServerIdentity(name, cert));
      return refusals.includes(undefined) ? undefined : refusals[0];
    },
  };
}

/** Whether a server URL asks for TLS (`tls://`). */
function saysTls(options: NatsConnectionOptions): boolean {
  return serverList(options).some((url) => /^\s*tls:\/\//i.test(url));
}

/** The servers, for messages: credentials in a URL (refused by the options, but a message may come first) are never shown. */
export function describeServers(options: NatsConnectionOptions): string {
  return serverList(options).map(withoutCredentials).join(', ');
}

/** The server's words for JetStream off: for the whole server ("jetstream is not enabled"), or for the user's account ("JetStream not enabled for account"). */
export const NO_JETSTREAM = /jetstream (is )?not enabled/i;
/** The account's JetStream limits refusing the pool's stream or consumer. */
export const ACCOUNT_LIMIT = /maximum number of streams|maximum consumers|requires a stream config to have max bytes|resource limits exceeded for account/i;
export const NOT_ALLOWED = /permissions violation/i;
/** An error's message on one line (OpenSSL's come with line breaks in them). */
export const messageOf = (error: unknown): string => String((error as Error)?.message ?? error).replace(/\s*\n\s*/g, ' ');

/** Whether the server refused something for the user's permissions ("Permissions Violation for …"). */
export function notPermitted(error: unknown): boolean {
  return NOT_ALLOWED.test(messageOf(error));
}

/** A publish the server refused this connection's user, as nats.js reports it (an `error` status): its subject, and the server's words. */
export function refusedPublish(status: Status): { subject: string; error: Error } | undefined {
  if (status.type !== 'error') return undefined;
  const { operation, subject } = status.error as { operation?: string; subject?: string };
  return operation === 'publish' && typeof subject === 'string' && notPermitted(status.error) ? { subject, error: status.error } : undefined;
}

/** A refused publish that was an answer to the other side's request (to its `_INBOX.` subject): the user lacks `allow_responses`. */
export function refusedAnswer(status: Status): Error | undefined {
  const refused = refusedPublish(status);
  return refused?.subject.startsWith('_INBOX.') ? refused.error : undefined;
}

/** The server, once connected to, refuses what the pool needs: it has no JetStream, or the user may not use it. */
export function refusedByServer(error: unknown): boolean {
  const message = messageOf(error);
  return NO_JETSTREAM.test(message) || NOT_ALLOWED.test(message) || SUBSCRIPTION_LIMIT.test(message) || ACCOUNT_LIMIT.test(message);
}

export const CREDENTIALS_UNUSABLE = 'CredentialsUnusable';

/** `connection.credsFile`'s bytes; an error naming the option when it cannot be read. */
async function readCredsFile(file: string): Promise<Uint8Array> {
  try {
    return await readFile(file);
  } catch (error) {
    throw unusableFile(file, 'connection.credsFile', error);
  }
}

/**
 * `connection.credsFile`'s bytes at each connection attempt: a file replaced on disk (credentials
 * rotated) is what the next reconnection logs in with. While it cannot be read (mid-rotation), the
 * bytes last read.
 */
async function credsReader(file: string): Promise<() => Uint8Array> {
  let last = await readCredsFile(file);
  return () => {
    try {
      last = readFileSync(file);
    } catch {
      // The bytes last read: a reconnection refused with them is said and tried again.
    }
    return last;
  };
}

/** Throws an error naming `option` when `file` cannot be read. */
async function unreadable(file: string, option: string): Promise<void> {
  try {
    await access(file, constants.R_OK);
  } catch (error) {
    throw unusableFile(file, option, error);
  }
}

function unusableFile(file: string, option: string, error: unknown): Error {
  const unusable = new Error(`${option} ${JSON.stringify(file)} cannot be read (${(error as NodeJS.ErrnoException).code ?? messageOf(error)})`, { cause: error });
  unusable.name = CREDENTIALS_UNUSABLE;
  return unusable;
}
