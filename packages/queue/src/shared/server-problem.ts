import { ACCOUNT_LIMIT, CREDENTIALS_UNUSABLE, describeServers, LOGIN_REFUSED, messageOf, NO_JETSTREAM, NOT_ALLOWED, STREAM_SILENT, SUBSCRIPTION_LIMIT, type NatsConnectionOptions } from './connection.js';

/** What is wrong with the pool's server, as `QueueServerError.problem` says it. */
export type QueueServerProblem = 'unreachable' | 'auth-failed' | 'no-jetstream' | 'not-permitted' | 'limit-reached' | 'misconfigured';

/**
 * `startExecutionWorker()` cannot use the pool's NATS server: it does not answer (`unreachable`:
 * a worker may retry), refuses the credentials (`auth-failed`), has no JetStream
 * (`no-jetstream`), its user may not do what the pool needs (`not-permitted`), its limits refuse
 * the subscriptions the pool needs (`limit-reached`: max_subscriptions), or the pool's
 * stream or consumer exists with settings the pool cannot use (`misconfigured`: made by hand).
 */
export class QueueServerError extends Error {
  override name = 'QueueServerError';
  constructor(
    message: string,
    readonly problem: QueueServerProblem,
    /** The server URLs tried, comma-separated. */
    readonly servers: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * Why `who` cannot use the pool's server: nats.js says only "jetstream is not enabled" of a
 * server started without JetStream, which a new user meets first.
 */
export function serverProblem(who: string, options: NatsConnectionOptions, error: unknown, connectedTo?: string): QueueServerError {
  if (error instanceof QueueServerError) return error;
  const message = messageOf(error);
  const servers = describeServers(options);
  const problem = (problem: QueueServerProblem, text: string) => new QueueServerError(text, problem, servers, { cause: error });
  if (connectedTo !== undefined && STREAM_SILENT.test(message)) return problem('unreachable', streamSilence(who, connectedTo, message));
  if ((error as Error)?.name === 'PoolStreamError') {
    return problem((error as { problem?: QueueServerProblem }).problem ?? 'misconfigured', `${who} cannot use the pool's stream on the NATS server (${servers}): ${message}`);
  }
  if (REPLICAS_REFUSED.test(message)) {
    return problem('misconfigured', `${who} cannot make the pool's stream with the copies streamReplicas asks for (${message}): more than 1 needs a JetStream cluster with at least that many servers up`);
  }
  if (NO_JETSTREAM.test(message)) {
    if (/account/i.test(message)) {
      return problem('no-jetstream', `${who} cannot use the NATS server (${servers}): JetStream is not enabled for its user's account (${message}); give that account a jetstream block in the server's config`);
    }
    return problem('no-jetstream', `${who} cannot use the NATS server (${servers}): JetStream is not enabled there; start nats-server with -js, or give its config a jetstream {} block`);
  }
  if (/requires a stream config to have max bytes/i.test(message)) {
    return problem('limit-reached', `${who} cannot use the NATS server (${servers}): its user's account wants every stream to have a max_bytes (${message}); make the pool's stream by hand with one, with workqueue retention on the pool's tasks subject (docs/backends/queue.md: a host keeps its max_bytes)`);
  }
  if (ACCOUNT_LIMIT.test(message)) {
    return problem('limit-reached', `${who} cannot use the NATS server (${servers}): the JetStream limits of its user's account refuse the pool's stream or consumer (${message}); raise them (max_streams, max_consumers, max_mem, max_file) or use an account with room`);
  }
  if (NOT_ALLOWED.test(message)) {
    return problem('not-permitted', `${who} cannot use the NATS server (${servers}): its user may not do what the pool needs (${message}); docs/backends/queue.md, "Security", lists the subjects`);
  }
  if (/maximum connections exceeded/i.test(message)) {
    return problem('limit-reached', `${who} could not connect to the NATS server (${servers}): ${message} (the server's, account's or user's max_connections)`);
  }
  if (SUBSCRIPTION_LIMIT.test(message)) {
    return problem(
      'limit-reached',
      `${who} cannot use the NATS server (${servers}): it refuses this connection more subscriptions (${message}: the server's, account's or user's max_subscriptions); a host needs 4, a worker 6`,
    );
  }
  // A TLS file named in the options, read before connecting (TLS problems are said as 'unreachable', as the server's are).
  if ((error as Error)?.name === CREDENTIALS_UNUSABLE && message.startsWith('connection.tls.')) return problem('unreachable', `${who} cannot use its TLS files: ${message}`);
  if ((error as Error)?.name === CREDENTIALS_UNUSABLE || /^nkeys: |unable to parse credentials/.test(message)) {
    return problem('auth-failed', `${who} cannot use its credentials: ${message}; check connection.seed (an NKey seed, "SU…") or credsFile`);
  }
  if (LOGIN_REFUSED.test(message)) {
    return problem('auth-failed', `${who} could not connect to the NATS server (${servers}): ${message}; check connection.user/pass, token, seed or credsFile`);
  }
  const tls = tlsFailure(options, message);
  if (tls) return problem('unreachable', `${who} could not connect to the NATS server (${servers}): ${tls}`);
  return problem('unreachable', `${who} could not connect to the NATS server (${servers}): ${message}`);
}

/** The pool's stream does not answer `who`, which is connected (see STREAM_SILENT). */
export function streamSilence(who: string, connectedTo: string, message: string): string {
  return (
    `${who} is connected to the NATS server (${connectedTo}), but the pool's JetStream stream does not answer (${message.trim()}): ` +
    'the server that holds it is down or starting, or a JetStream cluster has lost its quorum (docs/backends/queue.md, "A JetStream cluster")'
  );
}

/** The server's words for a stream's num_replicas it cannot give: a single server, or fewer servers in the cluster (up) than copies. */
const REPLICAS_REFUSED = /replicas > 1 not supported in non-clustered mode|insufficient resources.*peers|no suitable peers for placement/i;

/** What went wrong with TLS, with what to do, when `message` says it did (undefined otherwise). */
function tlsFailure(options: NatsConnectionOptions, message: string): string | undefined {
  if (options.tls && / doesn't exist$|^ENOENT|^EACCES/.test(message)) {
    return `a file connection.tls names cannot be read (${message}); check its caFile, certFile and keyFile`;
  }
  if (/does not support 'tls'/i.test(message)) {
    const asked = options.tls ? 'connection.tls' : 'its tls:// URL';
    return `TLS failed: the server does not offer TLS, which ${asked} requires, so nothing was sent to it; turn TLS on at the server, or use a nats:// URL (plain TCP: only on a network you trust)`;
  }
  if (/DECODER routines|PEM routines/i.test(message)) {
    return `TLS failed: ${message}; the client certificate or key (connection.tls certFile/keyFile, cert/key) cannot be read as one`;
  }
  if (/key values mismatch/i.test(message)) {
    return `TLS failed: ${message}; the client key (connection.tls keyFile or key) is not the key of the client certificate (certFile or cert)`;
  }
  if (options.tls?.handshakeFirst && /wrong version number/i.test(message)) {
    return `TLS failed: the server does not begin with TLS (${message}); drop connection.tls.handshakeFirst, or give the server handshake_first`;
  }
  if (TLS_FAILURE.test(message)) {
    const advice = options.tls
      ? "check connection.tls: caFile must hold the CA that signed the server's certificate, and the certificate must name the host in the server URL"
      : 'the server asks for TLS, or presents a certificate Node does not trust: give connection.tls (caFile for a private CA; certFile and keyFile if it wants a client certificate)';
    return `TLS failed: ${message}; ${advice}`;
  }
  if (message === 'timeout' && options.tls) {
    // TLS 1.3: the client's handshake ends before the server has checked its certificate, and a
    // server that refuses it closes the connection; nats.js then says only that it timed out.
    const what = options.tls.certFile ? 'check that connection.tls.certFile is signed by a CA the server trusts (its tls ca_file)' : 'give connection.tls certFile and keyFile';
    return `timeout; a server that wants a client certificate (tls verify) closes the connection without a word nats.js passes on: if yours does, ${what}`;
  }
  return undefined;
}

/** Node's and nats.js's words for a TLS handshake that failed (an untrusted or misnamed certificate, TLS required or refused). */
const TLS_FAILURE = /certificate|self[- ]signed|\bTLS\b|\bSSL\b|cert's CN|altnames|DECODER routines|PEM routines/i;
