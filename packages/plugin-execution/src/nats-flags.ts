import { readFileSync } from 'node:fs';

/**
 * How the CLI reaches a NATS server that wants more than a URL: credentials and TLS, for `worker`
 * and for `run --backend queue`. Files are named by flags; secrets themselves (a password, a
 * token) come only from the environment, never from a flag a `ps` shows. The variables are the
 * NATS CLI's own names, so an environment set up for `nats` works here too; a flag wins over its
 * variable.
 */
export const NATS_FLAGS = {
  creds: { type: 'string' },
  nkey: { type: 'string' },
  'tls-ca': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
} as const;

export const NATS_FLAGS_USAGE = `  --creds <file>            a NATS .creds file (JWT and NKey seed)   (env NATS_CREDS)
  --nkey <file>             a file holding an NKey seed ("SU…")     (env NATS_NKEY)
  --tls-ca <file>           the CA that signed the server's certificate (env NATS_CA)
  --tls-cert <file>         a client certificate, with --tls-key     (env NATS_CERT)
  --tls-key <file>          its private key                          (env NATS_KEY)
A user and password, or a token, come from the environment only: NATS_USER and NATS_PASSWORD,
or NATS_TOKEN; one way to log in at a time. A tls:// URL in --nats requires TLS (for every server
it lists), as --tls-ca does.
`;

type NatsFlagValues = { [K in keyof typeof NATS_FLAGS]?: string | undefined };

/** Each flag's variable (the NATS CLI's name). */
const FLAG_VARIABLES = { creds: 'NATS_CREDS', nkey: 'NATS_NKEY', 'tls-ca': 'NATS_CA', 'tls-cert': 'NATS_CERT', 'tls-key': 'NATS_KEY' } as const satisfies Record<keyof typeof NATS_FLAGS, string>;
/** The variables a login comes from with no flag of its own. */
const LOGIN_VARIABLES = ['NATS_USER', 'NATS_PASSWORD', 'NATS_TOKEN'] as const;

/** The connection options (besides `servers`) the flags and the environment give. */
export interface NatsAuth {
  user?: string;
  pass?: string;
  token?: string;
  credsFile?: string;
  seed?: string;
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
}

/** Thrown for flags or variables that do not go together: a usage error naming them. */
export class NatsFlagError extends Error {}

/** `--nats`'s comma-separated server URLs; an empty one (`nats://a,`, `a,,b`) is named, not passed on as no server. */
export function natsServers(value: string): string[] {
  const servers = value.split(',');
  if (servers.some((server) => server.trim() === '')) {
    throw new NatsFlagError(`--nats: ${JSON.stringify(value)} has an empty entry: give server URLs separated by commas (nats://a:4222,nats://b:4222)`);
  }
  return servers;
}

/**
 * `--creds`, `--nkey`, `--tls-*` and their variables, with NATS_USER/NATS_PASSWORD or NATS_TOKEN,
 * as connection options; an empty variable counts as unset. Each mistake names what was given, the
 * flag or the variable: a variable left from another setup is as likely as a typo.
 */
export function natsAuth(values: NatsFlagValues, env: NodeJS.ProcessEnv = process.env): NatsAuth {
  const given = (flag: keyof typeof NATS_FLAGS): { value: string; named: string } | undefined => {
    if (values[flag] !== undefined) return { value: values[flag]!, named: `--${flag}` };
    const variable = FLAG_VARIABLES[flag];
    return env[variable] ? { value: env[variable]!, named: variable } : undefined;
  };
  const user = env.NATS_USER || undefined;
  const pass = env.NATS_PASSWORD || undefined;
  if ((user === undefined) !== (pass === undefined)) throw new NatsFlagError(user === undefined ? 'NATS_PASSWORD is set without NATS_USER: give both, or NATS_TOKEN' : 'NATS_USER is set without NATS_PASSWORD: give both, or NATS_TOKEN');
  const token = env.NATS_TOKEN ? { value: env.NATS_TOKEN, named: 'NATS_TOKEN' } : undefined;
  const creds = given('creds');
  const nkey = given('nkey');
  const logins = [user !== undefined ? 'NATS_USER' : undefined, token?.named, creds?.named, nkey?.named].filter((named) => named !== undefined);
  if (logins.length > 1) throw new NatsFlagError(`${logins.join(' and ')} are ${logins.length === 2 ? 'both' : 'all'} given: give one way to log in`);
  const tls = { caFile: given('tls-ca'), certFile: given('tls-cert'), keyFile: given('tls-key') };
  if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) {
    const [one, other] = tls.certFile ? [tls.certFile.named, '--tls-key or NATS_KEY'] : [tls.keyFile!.named, '--tls-cert or NATS_CERT'];
    throw new NatsFlagError(`${one} needs ${other} (a client certificate and its key go together)`);
  }
  // A file that cannot be read is the command line's mistake, named as given (not a server problem).
  for (const file of [creds, ...Object.values(tls)]) if (file) readable(file.value, file.named);
  const givenTls = Object.fromEntries(Object.entries(tls).flatMap(([option, file]) => (file ? [[option, file.value]] : [])));
  return {
    ...(user !== undefined ? { user, pass: pass! } : {}),
    ...(token ? { token: token.value } : {}),
    ...(creds ? { credsFile: creds.value } : {}),
    ...(nkey ? { seed: readSeed(nkey.value, nkey.named) } : {}),
    ...(Object.keys(givenTls).length > 0 ? { tls: givenTls } : {}),
  };
}

/**
 * Once read: out of this process's environment, where a plugin would find them (an in-process
 * handler's process.env, or a subprocess handler that declares the names and is granted them).
 */
export function forgetNatsVariables(env: NodeJS.ProcessEnv = process.env): void {
  for (const name of [...LOGIN_VARIABLES, ...Object.values(FLAG_VARIABLES)]) delete env[name];
}

/** The text of a file given by `named` (a flag or a variable); a usage error naming it when it cannot be read. */
function readable(file: string, named: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new NatsFlagError(`${named} ${file}: cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
}

/** The seed in an --nkey file: its text without the line break an editor leaves. */
function readSeed(file: string, named: string): string {
  const seed = readable(file, named).trim();
  if (!/^S[A-Z0-9]{20,}$/.test(seed)) throw new NatsFlagError(`${named} ${file}: holds no NKey seed (one line starting "S", such as "SU…")`);
  return seed;
}

/** What the queue's (and the backends') messages call the options, and what a command line gives instead. */
const CLI_TERMS: ReadonlyArray<readonly [string, string]> = [
  ['check connection.user/pass, token, seed or credsFile', 'check NATS_USER and NATS_PASSWORD, NATS_TOKEN, --nkey or --creds'],
  ['give them as connection.user and connection.pass, or connection.token', 'give them as NATS_USER and NATS_PASSWORD, or NATS_TOKEN'],
  ['check connection.seed (an NKey seed, "SU…") or credsFile', 'check --nkey (a file holding an NKey seed, "SU…") or --creds'],
  ['a file connection.tls names cannot be read', 'a file --tls-ca, --tls-cert or --tls-key names cannot be read'],
  ['check its caFile, certFile and keyFile', 'check those flags (or NATS_CA, NATS_CERT, NATS_KEY)'],
  // A TLS handshake that failed (a private CA not given, a client certificate the server wants): what to give is a flag.
  ['give connection.tls (caFile for a private CA; certFile and keyFile if it wants a client certificate)', 'give --tls-ca (the CA that signed its certificate, for a private CA; --tls-cert and --tls-key if it wants a client certificate)'],
  ['check connection.tls: caFile must hold', 'check --tls-ca (or NATS_CA): it must hold'],
  ['which connection.tls requires', 'which --tls-ca, --tls-cert or --tls-key (or NATS_CA, NATS_CERT, NATS_KEY) requires'],
  ['(connection.tls certFile/keyFile, cert/key)', '(--tls-cert and --tls-key, or NATS_CERT and NATS_KEY)'],
  ['(connection.tls keyFile or key) is not the key of the client certificate (certFile or cert)', '(--tls-key or NATS_KEY) is not the key of the client certificate (--tls-cert or NATS_CERT)'],
  ['check that connection.tls.certFile is signed', 'check that --tls-cert (or NATS_CERT) is signed'],
  ['give connection.tls certFile and keyFile', 'give --tls-cert and --tls-key'],
  // A payload over a limit: the option is --max-payload-bytes on run and worker alike.
  ['(maxPayloadBytes: ', '(--max-payload-bytes '],
  ['(its maxPayloadBytes', '(its --max-payload-bytes'],
  // A root the subprocess backend cannot grant (a "," or "*"), refused when it is made: the CLI's flag gave it.
  ['workspace.root "', '--workspace-root "'],
];

/** A queue message said in the command line's terms: its flags and variables, not the API's options, which a CLI user cannot set. */
export function inCliTerms(message: string): string {
  let said = message;
  for (const [api, cli] of CLI_TERMS) said = said.replaceAll(api, cli);
  return said;
}
