import { lazySchema, option } from '@kb-labs/plugin-execution-core/backend-kit';
import { parseServerUrl } from './server-url.js';

/** How to reach the NATS server (or cluster): passed to `@nats-io/transport-node`'s `connect`. */
export interface NatsConnectionOptions {
  /** Server URLs, e.g. `nats://10.0.0.5:4222`; several for a cluster. @default 'nats://127.0.0.1:4222' */
  servers?: string | string[] | undefined;
  /** User name, with `pass`. @default undefined */
  user?: string | undefined;
  /** Password, with `user`. @default undefined */
  pass?: string | undefined;
  /** Token authentication. @default undefined */
  token?: string | undefined;
  /** An NKey seed (`SU…`) to sign the server's nonce with. @default undefined */
  seed?: string | undefined;
  /** A `.creds` file (JWT + NKey seed), read at each connection attempt (a file replaced on disk is used at the next reconnection). @default undefined */
  credsFile?: string | undefined;
  /** TLS options, passed through (`caFile`, `certFile`, `keyFile`, `ca`, `cert`, `key`, `handshakeFirst`). @default undefined: TLS when a server URL says `tls://` (then required, never plain), else as the server asks */
  tls?: { caFile?: string; certFile?: string; keyFile?: string; ca?: string; cert?: string; key?: string; handshakeFirst?: boolean } | undefined;
  /** Connection name the server shows in its monitoring. @default 'kb-plugin-exec host <id>' / 'kb-plugin-exec worker <id>' */
  name?: string | undefined;
}

const NO_SERVER = 'must be a server URL (nats://host:4222) or a non-empty array of them';
const isUrlText = (url: string) => url.length > 0 && !url.includes('\0');

/** The URL among `servers` with a scheme the NATS client does not speak: it would take `https://` for plain `nats://` (and send a password in the clear). */
function foreignScheme(servers: string | string[]): string | undefined {
  return (Array.isArray(servers) ? servers : [servers]).find((url) => {
    const scheme = /^\s*([a-z][a-z0-9+.-]*):\//i.exec(url)?.[1]?.toLowerCase();
    return scheme !== undefined && scheme !== 'nats' && scheme !== 'tls';
  });
}

/** The first of `servers` that is a port number alone ("14222"): the client would read it as an IPv4 address (0.0.55.142) and dial port 4222 there. */
function portAlone(servers: string | string[]): string | undefined {
  return (Array.isArray(servers) ? servers : [servers]).find((url) => /^\s*\d+\s*$/.test(url));
}

/** The first of `servers` that names no server ("nats://", " ", a port past 65535, "host:4222," from a list joined with a trailing comma). */
function unusableServer(servers: string | string[]): string | undefined {
  return (Array.isArray(servers) ? servers : [servers]).find((url) => {
    const hostname = parseServerUrl(url)?.hostname;
    return hostname === undefined || hostname === '' || hostname.includes(',');
  });
}

export const connectionSchema = lazySchema((z) =>
  z.strictObject({
    servers: z
      .union([z.string(), z.array(z.string())], { error: NO_SERVER })
      // An empty list would connect to nothing, and every execution would fail at its start.
      .refine((servers) => (Array.isArray(servers) ? servers.length > 0 && servers.every(isUrlText) : isUrlText(servers)), { error: NO_SERVER, abort: true })
      // Before the URL's form is judged: that refusal quotes the URL, and these are secrets.
      .refine((servers) => !(Array.isArray(servers) ? servers : [servers]).some((url) => url.includes('@')), {
        error: 'holds credentials (nats://user:pass@host), which the NATS client does not use: give them as connection.user and connection.pass, or connection.token',
        abort: true,
      })
      .refine((servers) => foreignScheme(servers) === undefined, {
        error: (issue) => {
          const url = foreignScheme(issue.input as string | string[]) ?? '';
          return `${JSON.stringify(url)} is not a NATS server URL: the client speaks nats:// (and tls://, which requires TLS), not ${url.trim().split(':')[0]}://`;
        },
        abort: true,
      })
      .refine((servers) => portAlone(servers) === undefined, {
        error: (issue) => {
          const port = (portAlone(issue.input as string | string[]) ?? '').trim();
          return `${JSON.stringify(port)} is a port number alone, which the NATS client would read as an IPv4 address: give the server's URL, nats://127.0.0.1:${port} for one on this machine`;
        },
        abort: true,
      })
      .refine((servers) => unusableServer(servers) === undefined, {
        error: (issue) => `${JSON.stringify(unusableServer(issue.input as string | string[]) ?? '')} is not a server URL such as nats://host:4222`,
        abort: true,
      })
      .optional(),
    user: option.text().optional(),
    pass: option.text().optional(),
    token: option.text().optional(),
    seed: option.text().optional(),
    credsFile: option.text().optional(),
    tls: z
      .strictObject({
        caFile: option.text().optional(),
        certFile: option.text().optional(),
        keyFile: option.text().optional(),
        ca: option.text().optional(),
        cert: option.text().optional(),
        key: option.text().optional(),
        handshakeFirst: option.boolean().optional(),
      })
      // A certificate without its key would only time out at a server that wants one.
      .refine((tls) => (tls.certFile === undefined && tls.cert === undefined) === (tls.keyFile === undefined && tls.key === undefined), {
        error: 'a client certificate (certFile or cert) and its key (keyFile or key) go together: give both, or neither',
      })
      .optional(),
    name: option.text().optional(),
  })
    // Dropped by the client without a word, the login would fail as "Authorization Violation".
    .refine((connection) => connection.pass === undefined || connection.user !== undefined, { path: ['pass'], error: 'is given without connection.user: give both, or connection.token' })
    .refine((connection) => connection.user === undefined || connection.pass !== undefined, { path: ['user'], error: 'is given without connection.pass: give both, or connection.token' })
    // The client would send them all, and which one the server goes by is its own choice.
    .refine((connection) => loginsOf(connection).length <= 1, { error: (issue) => `${loginsOf(issue.input as Record<string, unknown>).join(' and ')} are given: give one way to log in` }),
);

/** The ways to log in a connection's options give (user and pass count as one). */
function loginsOf(connection: Record<string, unknown>): string[] {
  const named = { 'connection.user/pass': connection.user ?? connection.pass, 'connection.token': connection.token, 'connection.seed': connection.seed, 'connection.credsFile': connection.credsFile };
  return Object.entries(named)
    .filter(([, value]) => value !== undefined)
    .map(([name]) => name);
}

/** The connection's own options a host or worker may put beside it: a record, so that the compiler keeps it equal to the type (`name` is left out: a top-level `name` may mean anything). */
const CONNECTION_KEYS: Record<Exclude<keyof NatsConnectionOptions, 'name'>, true> = { servers: true, user: true, pass: true, token: true, seed: true, credsFile: true, tls: true };
/** Names other NATS setups give the server's URL by. */
const SERVER_URL_NAMES = new Set(['nats', 'natsUrl', 'url', 'urls', 'server']);

/**
 * Where a key given at the top of a queue host's or worker's options goes when it is the
 * connection's (`servers`, `credsFile`), or the server's URL under another name (`nats`, `url`),
 * as a whole phrase; else undefined.
 */
export function connectionKeyElsewhere(key: string): string | undefined {
  if (Object.hasOwn(CONNECTION_KEYS, key)) return `not an option here; it is one of the connection's: connection: { ${key} }`;
  if (SERVER_URL_NAMES.has(key)) return "not an option; the NATS server's URL is the connection's servers: connection: { servers: 'nats://host:4222' }";
  return undefined;
}
