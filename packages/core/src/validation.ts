import type { z } from 'zod';
import { HandlerError, ValidationError } from './errors.js';
import { didYouMean } from './host/nearest-name.js';
import { firstItems } from './handler-details.js';
import { shownControls } from './shown-controls.js';
import { truncate } from './wire-value.js';

import type { ValidationIssue } from './error-details.js';

export type { ValidationIssue } from './error-details.js';

/** `['handlers', 'run', 'entry']` → `handlers.run.entry`; `['channels', 0]` → `channels[0]`. */
export function formatPath(path: readonly PropertyKey[], root = ''): string {
  let out = root;
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (typeof segment === 'string' && /^[A-Za-z_$][\w$]*$/.test(segment)) out += out ? `.${segment}` : segment;
    else out += `[${JSON.stringify(String(segment))}]`;
  }
  return out || '(root)';
}

/**
 * The issues of a failed parse, each path readable. Given the schema, a key it does not take is
 * said one by one, with the nearest key it takes there (`timeoutMS` → did you mean "timeoutMs"?).
 */
export function issuesOf(error: z.ZodError, root = '', schema?: z.ZodType): ValidationIssue[] {
  const issues = tightestBounds(withinUnions(error.issues)).flatMap((issue) => {
    if (!schema || issue.code !== 'unrecognized_keys') return [issueOf(issue, root)];
    const known = keysAt(schema, issue.path);
    return issue.keys.map((key) => ({ path: formatPath(issue.path, root), message: `unknown key ${JSON.stringify(key)}${didYouMean(key, known)}` }));
  });
  return distinctIssues(issues);
}

/**
 * Of two bounds a value breaks on one path, the one that decides: zod's int() refuses 1e20 as
 * above 2**53 - 1 beside the schema's own max(), which is the one to say.
 */
function tightestBounds(issues: z.core.$ZodIssue[]): z.core.$ZodIssue[] {
  const boundOf = (issue: z.core.$ZodIssue): number | undefined => {
    const i = issue as { minimum?: number | bigint; maximum?: number | bigint };
    if (issue.code === 'too_big' && i.maximum !== undefined) return Number(i.maximum);
    if (issue.code === 'too_small' && i.minimum !== undefined) return -Number(i.minimum);
    return undefined;
  };
  const keyed = issues.map((issue) => ({ issue, key: `${issue.code}\0${issue.path.map(String).join('\0')}`, bound: boundOf(issue) }));
  const tightest = new Map<string, number>();
  for (const { key, bound } of keyed) if (bound !== undefined && !(tightest.get(key)! <= bound)) tightest.set(key, bound);
  return keyed.filter(({ key, bound }) => bound === undefined || tightest.get(key) === bound).map(({ issue }) => issue);
}

/** Each issue once: two checks may refuse a value in the same words (zod's int() and max() both refuse 2**53). */
export function distinctIssues(issues: ValidationIssue[]): ValidationIssue[] {
  const said = new Set<string>();
  return issues.filter((issue) => !said.has(`${issue.path}\0${issue.message}`) && said.add(`${issue.path}\0${issue.message}`));
}

/**
 * The keys an object schema takes at `path` (`connection` → `servers`, `user`, `tls` …;
 * `handlers.run` → `entry`, `export` …), through optional and default wrappers, unions (`watch`:
 * a boolean or an object), records and arrays.
 */
export function keysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  type Node = { shape?: Record<string, Node>; unwrap?: () => Node; options?: Node[]; valueType?: Node } | undefined;
  const unwrap = (node: Node): Node => {
    // An array unwraps to its items (zod's ZodArray.unwrap()), so an index in the path is passed over.
    while (node && !node.shape && typeof node.unwrap === 'function') node = node.unwrap();
    if (node && !node.shape && Array.isArray(node.options)) return node.options.map(unwrap).find((option) => option?.shape);
    return node;
  };
  let node = unwrap(schema as unknown as Node);
  for (const key of path) {
    if (typeof key === 'number') continue;
    node = unwrap(node?.shape ? node.shape[key as string] : node?.valueType);
  }
  return node?.shape ? Object.keys(node.shape) : [];
}

/**
 * Issues with each failed union replaced by the problems inside the one member the input was of
 * the kind of, where there is exactly one (`watch: { debounceMs: NaN }` → `watch.debounceMs: must
 * be a number`, not "must be a boolean or { debounceMs?, onReload? }"); else the union's own
 * message. Parse with `{ reportInput: true }` so that a class instance is not taken for a plain object.
 */
export function withinUnions(issues: readonly z.core.$ZodIssue[]): z.core.$ZodIssue[] {
  return issues.flatMap((issue) => {
    // An instance of some class (a WorkspaceManager of another copy of core) is not an options object.
    if (issue.code !== 'invalid_union' || isInstance(issue.input)) return [issue];
    const ofItsKind = issue.errors.filter((member) => member.length > 0 && member.every((i) => i.path.length > 0 || i.code === 'unrecognized_keys'));
    if (ofItsKind.length !== 1) return [issue];
    return withinUnions(ofItsKind[0]!.map((inner) => ({ ...inner, path: [...issue.path, ...inner.path] }) as z.core.$ZodIssue));
  });
}

function isInstance(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return false;
  const prototype = Object.getPrototypeOf(value);
  return prototype !== Object.prototype && prototype !== null;
}

/** One zod issue as a ValidationIssue: its path readable, its message in the house wording. */
export function issueOf(issue: z.core.$ZodIssue, root = ''): ValidationIssue {
  const keys = (issue as { keys?: string[] }).keys;
  const message =
    issue.code === 'unrecognized_keys' && keys ? `unknown key${keys.length > 1 ? 's' : ''} ${keys.map((k) => JSON.stringify(k)).join(', ')}` : houseMessage(issue);
  return { path: formatPath(issue.path, root), message };
}

const KINDS: Record<string, string> = { number: 'a number', int: 'an integer', string: 'a string', boolean: 'a boolean', object: 'an object', record: 'an object', array: 'an array' };

/**
 * zod's own wording ("Invalid input: expected record, received array") in the words of every
 * other message here ("must be an object, got array"); a schema's own message is kept.
 */
function houseMessage(issue: z.core.$ZodIssue): string {
  const i = issue as { message: string; expected?: string; origin?: string; minimum?: number | bigint; maximum?: number | bigint; inclusive?: boolean; values?: unknown[] };
  const own = (prefix: string) => !i.message.startsWith(prefix);
  switch (issue.code) {
    case 'invalid_type': {
      if (own('Invalid input:')) return i.message;
      const received = /received (\w+)$/.exec(i.message)?.[1];
      if (received === 'undefined') return 'is required';
      if (i.expected === 'int' && received === 'number') return 'must be an integer';
      return `must be ${KINDS[i.expected ?? ''] ?? i.expected}${received ? `, got ${received}` : ''}`;
    }
    case 'too_small':
      if (own('Too small:')) return i.message;
      if (i.origin === 'string') return Number(i.minimum) === 1 ? 'must not be empty' : `must be at least ${i.minimum} characters`;
      if (i.origin === 'array') return `must have at least ${i.minimum} item${Number(i.minimum) === 1 ? '' : 's'}`;
      return `must be ${i.inclusive === false ? 'greater than' : 'at least'} ${i.minimum}`;
    case 'too_big':
      if (own('Too big:')) return i.message;
      if (i.origin === 'string') return `must be at most ${i.maximum} characters`;
      if (i.origin === 'array') return `must have at most ${i.maximum} items`;
      return `must be ${i.inclusive === false ? 'less than' : 'at most'} ${i.maximum}`;
    case 'invalid_value':
      if (own('Invalid option:') && own('Invalid input:')) return i.message;
      return `must be ${i.values && i.values.length > 1 ? 'one of ' : ''}${(i.values ?? []).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'invalid_key': {
      // zod says "Invalid key in record"; the key's own schema says what a key must be.
      const keyIssue = (issue as { issues?: z.core.$ZodIssue[] }).issues?.[0];
      return keyIssue ? `is not a valid key: it ${houseMessage(keyIssue)}` : i.message;
    }
    default:
      return i.message;
  }
}

/** A ValidationError whose message lists every problem with its path, and whose details keep them. */
export function validationError(subject: string, issues: ValidationIssue[], extra: Record<string, unknown> = {}): ValidationError {
  const shown = issues.slice(0, 20);
  // One line per issue, whatever the keys and values it quotes hold: a manifest's key with a C1
  // control or a bidirectional override (JSON.stringify leaves those raw), a foreign schema's
  // message with a line break, is written out in the message (details keep them as they came).
  const lines = shown.map((i) => shownControls(`  - ${i.path}: ${i.message}`, ''));
  if (issues.length > shown.length) lines.push(`  - … and ${issues.length - shown.length} more`);
  // Cut as the wire cuts a message (64 Ki characters): a caller's key or value of 10 MB (a client's
  // JSON spread into a request) is in `details` once, not again in the message and the stack.
  return new ValidationError(truncate(`${subject}:\n${lines.join('\n')}`), { details: { ...extra, issues } });
}

/** Parse with a zod schema or throw a ValidationError naming each path. */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown, subject: string, root = '', extra?: Record<string, unknown>): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  throw validationError(subject, issuesOf(result.error, root, schema), extra);
}

/**
 * Validate a handler's input with whatever schema the handler declared: zod (any version),
 * or anything implementing Standard Schema (`~standard.validate`) synchronously. A refusal is
 * the caller's (VALIDATION_ERROR); a schema that is none, or answers what no schema does, is the
 * plugin's bug (HANDLER_ERROR). `handler`: `handler "run" of plugin "x"`.
 */
export function validateWithForeignSchema(schema: unknown, value: unknown, handler: string): unknown {
  const subject = `Invalid input for ${handler}`;
  const s = schema as {
    safeParse?: (v: unknown) => { success: boolean; data?: unknown; error?: { issues?: Array<{ path?: PropertyKey[]; message?: string }> } };
    '~standard'?: { validate: (v: unknown) => unknown };
  };
  if (typeof s?.safeParse === 'function') {
    const result = s.safeParse(value);
    if (result === null || typeof result !== 'object') throw unusableSchemaResult(handler, 'safeParse()');
    if (result.success) return result.data;
    throw validationError(subject, issueList(result.error?.issues), { phase: 'input' });
  }
  const standard = s?.['~standard'];
  if (standard && typeof standard.validate === 'function') {
    const result = standard.validate(value) as { value?: unknown; issues?: unknown } | null | undefined;
    if (result === null || typeof result !== 'object') throw unusableSchemaResult(handler, '~standard.validate()');
    if (typeof (result as { then?: unknown }).then === 'function') {
      // Its outcome is not awaited: a rejection must not surface as the host's unhandled one.
      try {
        Promise.resolve(result).catch(() => undefined);
      } catch {
        // A thenable whose `then` getter throws: nothing pending to drop.
      }
      throw new HandlerError(`${capitalized(handler)}: its input schema is asynchronous (~standard.validate() returned a promise); only synchronous schemas are supported`);
    }
    if (!result.issues) return result.value;
    throw validationError(subject, issueList(result.issues), { phase: 'input' });
  }
  throw new HandlerError(`${capitalized(handler)}: its "input" is not a schema (a zod schema, or one with ~standard.validate): ${describeGiven(schema)}`);
}

// The schema is the handler's code: its result is checked like any other untrusted value, so a
// broken schema gives an error that says so, not a TypeError from in here.
function unusableSchemaResult(handler: string, call: string): HandlerError {
  return new HandlerError(`${capitalized(handler)}: its input schema returned an unusable result from ${call}`);
}

function capitalized(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** What a plugin gave where a schema or a handler definition belongs, in a few words. */
export function describeGiven(value: unknown): string {
  if (typeof value === 'function') return `a function${value.name ? ` (${value.name})` : ''}`;
  if (value === null || typeof value !== 'object') return typeof value === 'string' ? `the string ${JSON.stringify(value.slice(0, 40))}` : String(value);
  const keys = Object.keys(value);
  return keys.length === 0 ? 'an object with no keys' : `an object with ${keys.slice(0, 5).join(', ')}${keys.length > 5 ? ' …' : ''}`;
}

/** A schema's issues, as many as every backend carries (firstItems): a list with holes, or millions long, is the plugin's. */
function issueList(issues: unknown): ValidationIssue[] {
  const list = Array.isArray(issues) ? firstItems(issues).items.map(toIssue) : [];
  return list.length > 0 ? list : [{ path: 'input', message: 'invalid' }];
}

function toIssue(issue: unknown): ValidationIssue {
  const { path: rawPath, message } = (typeof issue === 'object' && issue !== null ? issue : {}) as { path?: unknown; message?: unknown };
  const path = (Array.isArray(rawPath) ? rawPath : []).map((p: unknown) =>
    typeof p === 'object' && p !== null ? (p as { key?: PropertyKey }).key ?? '?' : (p as PropertyKey),
  );
  return { path: formatPath(path, 'input'), message: typeof message === 'string' && message ? message : 'invalid' };
}
