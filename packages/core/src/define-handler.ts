import type { z } from 'zod';
import type { ContextDescriptor } from './host/request.js';
import { describeGiven } from './validation.js';

/**
 * `ctx.logger`. A line reaches the host's `onLog` with its fields, the same on every backend;
 * fields that are not an object (plain JavaScript, console-style: `logger.info('user', name)`)
 * arrive as `{ value }`.
 */
export interface HandlerLogger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** `ctx.channel` inside a WebSocket channel handler. Every method is async on every backend. */
export interface ChannelContext {
  readonly connectionId: string;
  readonly path: string;
  /**
   * Send to this connection. Resolves false when it is closed (or was cut off for its backlog);
   * true once the frame is on its way and the connection's backlog is under half its limit: a
   * handler that awaits each send streams at its client's pace.
   */
  send(data: unknown): Promise<boolean>;
  /** Send to another connection of the same channel. Resolves false when it is not open; paced as `send`. */
  sendTo(connectionId: string, data: unknown): Promise<boolean>;
  /**
   * Send to every open connection of the channel; returns how many got it. `scope: 'path'` limits it
   * to connections on this connection's exact path (e.g. one room of a "/rooms/:room" channel).
   */
  broadcast(data: unknown, options?: { exclude?: string[]; scope?: 'channel' | 'path' }): Promise<number>;
  /** Close a connection (this one by default). Resolves false when it is not open (unknown, closed, or of another channel). */
  close(code?: number, reason?: string, connectionId?: string): Promise<boolean>;
}

/**
 * The host's services as plugins see them on `ctx.platform`. Empty here: a plugin (or a types
 * package the host publishes for its plugins) declares the services it uses, once:
 *
 * ```ts
 * declare module '@kb-labs/plugin-execution-core' {
 *   interface PlatformServices {
 *     kv: { get(key: string): Promise<string | undefined> };
 *   }
 * }
 * ```
 *
 * Every call is still checked at run time against the handler's declared permissions; the
 * declaration only tells the compiler what the host provides. A handler typed for another
 * platform can name it instead: `HandlerContext<MyPlatform>`.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-interface -- filled by declaration merging
export interface PlatformServices {}

/** A method as the host implements it: the declared parameters, its value returned or a promise of it (the plugin always gets a promise). */
type HostMethod<M> = M extends (...args: infer A) => infer R ? (...args: A) => Awaited<R> | PromiseLike<Awaited<R>> : M;

/**
 * The host's `platform` option as the compiler checks it: the services declared in
 * `PlatformServices` (each optional, or `undefined`: not provided) with their methods as declared,
 * any other service as well. With nothing declared, any object of services. An object literal
 * is taken with services beyond the declared ones (the `Record`), and so is a value the host typed
 * by an interface of its own, which has no index signature (the `object`).
 */
export type HostPlatform = {
  [S in keyof PlatformServices]?: { [M in keyof PlatformServices[S]]?: HostMethod<PlatformServices[S][M]> | undefined } | undefined;
} & (Record<string, unknown> | object);

export interface HandlerContext<P = PlatformServices> {
  readonly executionId: string;
  readonly pluginId: string;
  readonly handlerId: string;
  /** The host's context descriptor (requestId, tenantId, host data, config …). */
  readonly context: ContextDescriptor;
  /** This execution's private directory; undefined when the backend runs with `workspace: false`. */
  readonly workspace: { readonly dir: string } | undefined;
  /** Fires on timeout, abort and shutdown; `signal.reason` is the ExecutionError. */
  readonly signal: AbortSignal;
  readonly logger: HandlerLogger;
  /** Stream an event to the host's `onEvent` (e.g. progress). The value must be structured-cloneable. */
  emit(event: unknown): void;
  /** The host's services; calls are checked against the handler's declared permissions. */
  readonly platform: P;
  /** Present for channel handlers only. */
  readonly channel?: ChannelContext;
  /**
   * The W3C `traceparent` of this execution's span, to pass on in outbound calls (an HTTP
   * `traceparent` header) so that they join the host's trace; undefined when the host records
   * no traces. The same on every backend (docs/observability.md).
   */
  readonly traceparent?: string | undefined;
}

export interface HandlerDefinition<S extends z.ZodType | undefined = undefined, O = unknown, P = PlatformServices> {
  /** Validates (and may transform) the input before `run`; failures give VALIDATION_ERROR. */
  input?: S;
  /** `ctx.platform` is typed by the `PlatformServices` declaration (see there), or by `ctx: HandlerContext<MyPlatform>` written here. */
  run(input: S extends z.ZodType ? z.output<S> : unknown, ctx: HandlerContext<P>): O | Promise<O>;
}

const HANDLER_BRAND = Symbol.for('@kb-labs/plugin-execution/handler');

export type DefinedHandler<S extends z.ZodType | undefined = undefined, O = unknown, P = PlatformServices> = Readonly<HandlerDefinition<S, O, P>> & {
  readonly [HANDLER_BRAND]: true;
};

/**
 * Declare a handler: `export default defineHandler({ input: z.object({...}), async run(input, ctx) {...} })`.
 * Its mistakes are said where the plugin's module calls it (a TypeError naming what it was given).
 */
export function defineHandler<S extends z.ZodType | undefined = undefined, O = unknown, P = PlatformServices>(
  definition: HandlerDefinition<S, O, P>,
): DefinedHandler<S, O, P> {
  // Called by the runtime with (input, ctx): the module exported defineHandler itself.
  const ctx = arguments[1] as { executionId?: unknown; logger?: unknown } | undefined;
  if (ctx !== null && typeof ctx === 'object' && typeof ctx.executionId === 'string' && ctx.logger !== undefined) {
    throw new TypeError('The module exports defineHandler itself, not a handler made with it: export defineHandler({ run(input, ctx) { … } })');
  }
  if (!definition || typeof definition.run !== 'function') {
    throw new TypeError(`defineHandler() needs an object with a run(input, ctx) function, and was given ${describeGiven(definition)}`);
  }
  const input: unknown = definition.input;
  if (input !== undefined && !isSchema(input)) {
    throw new TypeError(`defineHandler(): "input" must be a schema (a zod schema, or one with ~standard.validate), and is ${describeGiven(input)}`);
  }
  const misnamed = misnamedInputSchema(definition);
  if (misnamed !== undefined) throw new TypeError(`defineHandler(): ${misnamedSchemaText(misnamed)} (defineHandler({ input, run }))`);
  return Object.freeze({ ...definition, [HANDLER_BRAND]: true as const });
}

/**
 * The key of a schema a handler's definition gives under another name than `input` (`inputSchema`,
 * `schema`, `inputs`) when it has no `input`: ignored, it would leave every input unchecked, so it
 * is said where the definition is made (defineHandler) or loaded (a plain `{ run }` object).
 */
export function misnamedInputSchema(definition: object): string | undefined {
  const fields = definition as Record<string, unknown>;
  return fields.input === undefined ? Object.keys(fields).find((key) => isSchema(fields[key])) : undefined;
}

/** The words for misnamedInputSchema's finding. */
export function misnamedSchemaText(key: string): string {
  return `${JSON.stringify(key)} holds a schema, which nothing uses: only the one named "input" validates the input`;
}

function isSchema(value: unknown): boolean {
  const schema = value as { safeParse?: unknown; '~standard'?: { validate?: unknown } } | null;
  return schema !== null && (typeof schema === 'object' || typeof schema === 'function') && (typeof schema.safeParse === 'function' || typeof schema['~standard']?.validate === 'function');
}

/**
 * What defineHandler() returned, or a plain `{ run }` (an input schema beside it) with no other
 * function: an object of several functions is a module's exports (`module.exports = { run, build }`),
 * and which one a handler means is for the manifest's `"export"` to say, not for `run` to win.
 */
export function isDefinedHandler(value: unknown): value is DefinedHandler<z.ZodType | undefined> {
  if (typeof value !== 'object' || value === null || typeof (value as { run?: unknown }).run !== 'function') return false;
  return (value as { [HANDLER_BRAND]?: unknown })[HANDLER_BRAND] === true || functionsOf(value).length === 1;
}

/** The names of an object's own enumerable function-valued properties. */
export function functionsOf(value: object): string[] {
  return Object.keys(value).filter((key) => typeof (value as Record<string, unknown>)[key] === 'function');
}
