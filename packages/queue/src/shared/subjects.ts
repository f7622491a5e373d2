import { option, validationError } from '@kb-labs/plugin-execution-core/backend-kit';

/** The default first token of every subject and stream name. */
export const DEFAULT_SUBJECT_PREFIX = 'kbexec';
export const DEFAULT_POOL = 'default';

const TOKEN = /^[A-Za-z0-9_-]{1,64}$/;

/** Whether `value` is one token of a subject as ours are made (a pool, a worker's id): 1 to 64 letters, digits, "_" or "-". */
export const isSubjectToken = (value: unknown): value is string => typeof value === 'string' && TOKEN.test(value);

/**
 * Every NATS name one pool uses, derived from the prefix and the pool name, so that a host and
 * its workers agree without configuration beyond those two:
 * - stream `<PREFIX>_<pool>` (streamName) on subject `<prefix>.<pool>.tasks`: the work queue;
 * - durable pull consumer `<pool>-workers` on it, shared by every worker of the pool;
 * - `<prefix>.<pool>.caller.<hostId>`: what workers send to one host (started, heartbeats, logs,
 *   events, platform and channel calls, results);
 * - `<prefix>.<pool>.worker.<workerId>`: what a host sends to one worker (cancel, call replies, a large input);
 * - `<prefix>.<pool>.presence` (+ `.query`): workers saying who they are, every heartbeat.
 */
export class PoolSubjects {
  readonly stream: string;
  readonly consumer: string;
  readonly tasks: string;
  readonly presence: string;
  readonly presenceQuery: string;
  readonly #base: string;

  constructor(
    readonly prefix: string,
    readonly pool: string,
  ) {
    this.#base = `${prefix}.${pool}`;
    this.stream = streamName(prefix, pool);
    this.consumer = `${pool}-workers`;
    this.tasks = `${this.#base}.tasks`;
    this.presence = `${this.#base}.presence`;
    this.presenceQuery = `${this.#base}.presence.query`;
  }

  /**
   * Where the answers to a host's or a worker's requests come (its connection's inbox prefix):
   * its users may subscribe to these alone, not to every `_INBOX.>`, where another pool's tasks go.
   */
  inbox(role: 'host' | 'worker'): string {
    return `_INBOX.${this.#base}.${role}`;
  }

  caller(hostId: string): string {
    return `${this.#base}.caller.${hostId}`;
  }

  /**
   * Whether `subject` is a host's of this pool (one token after `caller.`, of the letters and length
   * of a host's id): a task that names another is a peer's forgery. Asked, a longer token could pass
   * the server's control line (4 KiB), for which the server closes the worker's connection.
   */
  isCaller(subject: string): boolean {
    const start = `${this.#base}.caller.`;
    return subject.startsWith(start) && isSubjectToken(subject.slice(start.length));
  }

  worker(workerId: string): string {
    return `${this.#base}.worker.${workerId}`;
  }
}

/**
 * The pool's stream name: the prefix upper-cased, its dots as "_", then "_" and the pool
 * (`kbexec`, `reports` → `KBEXEC_reports`). Two prefixes that differ only in case or in "." for
 * "_" (`kbexec` and `KBEXEC`, `kb.exec` and `kb_exec`) name the same stream: the second
 * deployment is refused, naming the first (ownerOfStream).
 */
export function streamName(prefix: string, pool: string): string {
  return `${prefix.replaceAll('.', '_').toUpperCase()}_${pool}`;
}

/**
 * The pool subjects of another deployment whose stream name is `subjects.stream`, if `taken` (a
 * stream's subject) is its task subject (`<prefix>.<pool>.tasks`, with another prefix or pool).
 */
export function ownerOfStream(subjects: PoolSubjects, taken: string): { prefix: string; pool: string } | undefined {
  const tokens = taken.split('.');
  if (tokens.length < 3 || tokens.at(-1) !== 'tasks' || taken === subjects.tasks) return undefined;
  const prefix = tokens.slice(0, -2).join('.');
  const pool = tokens.at(-2)!;
  return streamName(prefix, pool) === subjects.stream ? { prefix, pool } : undefined;
}

/**
 * The words of the layout after `<prefix>.<pool>` (and of the inboxes, `_INBOX.<prefix>.<pool>.host`
 * and `.worker`). As a pool, or a prefix's token after its first, one would put a deployment's
 * subjects under another's (prefix `kbexec.a` with pool `worker` sends its tasks on
 * `kbexec.a.worker.tasks`, which pool "a"'s workers may read as `kbexec.a.worker.*`; with pool
 * `host`, its hosts' replies come under `_INBOX.kbexec.a.host.>`, which pool "a"'s hosts read).
 */
const LAYOUT_WORDS = ['tasks', 'caller', 'worker', 'presence', 'host'];
const LAYOUT_WORDS_SAID = '"tasks", "caller", "worker", "presence" or "host" (words of the subjects\' layout: its subjects would lie under another pool\'s, whose users could read them)';

/** A pool name's option: one subject token, checked before it reaches NATS, with the other options. */
export const poolOption = () =>
  option
    .text()
    .refine((pool) => pool === '' || TOKEN.test(pool), { error: (issue) => `must be 1 to 64 letters, digits, "_" or "-", got ${JSON.stringify(issue.input)}`, abort: true })
    .refine((pool) => !LAYOUT_WORDS.includes(pool), { error: () => `must not be ${LAYOUT_WORDS_SAID}`, abort: true });

/** A subject prefix's option: dot-separated subject tokens. */
export const subjectPrefixOption = () =>
  option
    .text()
    .refine((prefix) => prefix === '' || prefix.split('.').every((token) => TOKEN.test(token)), { error: (issue) => `must be dot-separated tokens of letters, digits, "_" and "-", got ${JSON.stringify(issue.input)}`, abort: true })
    // NATS's reply subjects: a request-reply client is commonly allowed to read all of `_INBOX.>`.
    .refine((prefix) => prefix.split('.')[0] !== '_INBOX', { error: () => 'must not start with "_INBOX" (the subjects of NATS replies, which request-reply clients may all read)', abort: true })
    .refine((prefix) => !prefix.split('.').slice(1).some((token) => LAYOUT_WORDS.includes(token)), { error: () => `must not have, after its first token, ${LAYOUT_WORDS_SAID}` });

/** The longest stream name NATS takes. */
const MAX_STREAM_NAME = 255;

/** A prefix and pool whose stream name NATS refuses (too long), refused with the other options: the server would say only "stream name is too long". */
export function checkStreamName(prefix: string, pool: string, subject: string): void {
  const name = streamName(prefix, pool);
  if (name.length <= MAX_STREAM_NAME) return;
  const message = `with pool "${pool}" names a stream of ${name.length} characters (the prefix upper-cased, "_", the pool); NATS takes at most ${MAX_STREAM_NAME}: shorten subjectPrefix or pool`;
  throw validationError(`Invalid ${subject}`, [{ path: 'subjectPrefix', message }], { phase: 'options' });
}

/** An id usable as one subject token: anything else becomes "-". */
export function subjectToken(text: string): string {
  return text.replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 64) || 'x';
}
