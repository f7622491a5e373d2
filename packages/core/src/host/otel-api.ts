import type { Meter, MeterProvider, Tracer, TracerProvider } from '@opentelemetry/api';
// Node's built-ins by getBuiltinModule, taken when this module loads: an ES import of a built-in
// also builds its ES facade, which every host would pay for at start-up (docs/benchmarks.md, Start-up).
const { createRequire } = process.getBuiltinModule('node:module');

/** `@opentelemetry/api`, the optional peer dependency: the only OpenTelemetry package core loads. */
export type OtelApi = typeof import('@opentelemetry/api');

/** The tracer's and the meter's name (instrumentation scope). */
export const INSTRUMENTATION_NAME = '@kb-labs/plugin-execution';

/**
 * Where every copy of `@opentelemetry/api` 1.x keeps what is registered globally (the tracer and
 * meter providers, the context manager …): the key the copies share so that a host's SDK is seen
 * by a library that resolved another copy. Read directly only to tell "nothing registered at
 * all" with one property read; everything else goes through the API.
 */
const GLOBAL_KEY = Symbol.for('opentelemetry.js.api.1');

/** What every copy of the API 1.x registered globally: the registering copy's version and the providers. */
interface GlobalRegistry {
  version?: unknown;
  trace?: unknown;
  metrics?: unknown;
}

function globalRegistry(): GlobalRegistry | undefined {
  return (globalThis as { [GLOBAL_KEY]?: GlobalRegistry })[GLOBAL_KEY];
}

/** The API once loaded: `null` when it is not installed (or failed to load), `undefined` before the first try. */
let loaded: OtelApi | null | undefined;
/** This copy's no-op tracer provider and no-op meter class: what "no SDK registered" looks like. */
let noop: { tracerProvider: TracerProvider; meterClass: abstract new () => Meter } | undefined;

/**
 * The API, or undefined while no tracer or meter provider is registered with it: the check every
 * execution makes, one property read when the host set up no OpenTelemetry. Loaded when first
 * needed, synchronously (a `require` from this module's own location, so that it finds the copy
 * installed beside core) and once. If it cannot be loaded, executions run untraced and a process
 * warning says why, once: a provider is registered, so the host meant them to be traced.
 */
export function otelApi(): OtelApi | undefined {
  const registry = globalRegistry();
  if (registry === undefined || (registry.trace === undefined && registry.metrics === undefined)) return undefined;
  if (loaded === undefined) loaded = load();
  return loaded ?? undefined;
}

function load(): OtelApi | null {
  let api: OtelApi;
  try {
    api = createRequire(import.meta.url)('@opentelemetry/api') as OtelApi;
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    const missing = e?.code === 'MODULE_NOT_FOUND' && String(e.message).includes('@opentelemetry/api');
    const why = missing
      ? '@opentelemetry/api cannot be resolved from @kb-labs/plugin-execution-core (add it to the host\'s dependencies)'
      : `@opentelemetry/api failed to load: ${e?.message ?? String(error)}`;
    process.emitWarning(`An OpenTelemetry provider is registered, but plugin executions are not recorded: ${why}`, { code: 'KB_PLUGIN_EXECUTION_OTEL' });
    return null;
  }
  noop = { tracerProvider: new api.ProxyTracerProvider().getDelegate(), meterClass: api.createNoopMeter().constructor as abstract new () => Meter };
  return api;
}

/** The tracer of the provider last seen, or undefined for the no-op one (re-resolved when the global provider changes). */
let tracerOf: { provider: TracerProvider; tracer: Tracer | undefined } | undefined;
/** The same for the meter. */
let meterOf: { provider: MeterProvider; meter: Meter | undefined } | undefined;

/**
 * The tracer of the globally registered SDK, or undefined when none is registered (the API's
 * no-op provider): the one check an execution makes before doing any span work. A Map-free
 * identity comparison with the provider seen last.
 */
export function activeTracer(api: OtelApi): Tracer | undefined {
  const proxy = api.trace.getTracerProvider() as TracerProvider & { getDelegate?: () => TracerProvider };
  const provider = typeof proxy.getDelegate === 'function' ? proxy.getDelegate() : proxy;
  if (tracerOf?.provider !== provider) {
    const unseen = provider === noop!.tracerProvider;
    if (unseen) warnIfRefused('tracer', proxy, globalRegistry()?.trace);
    tracerOf = { provider, tracer: unseen ? undefined : provider.getTracer(INSTRUMENTATION_NAME) };
  }
  return tracerOf.tracer;
}

/**
 * The meter of the globally registered SDK, or undefined when none is registered. The metrics
 * API has no proxy: a meter taken before the SDK registered would stay a no-op, so the provider
 * is looked up again for each execution and the meter re-made when it changed.
 */
export function activeMeter(api: OtelApi): Meter | undefined {
  const provider = api.metrics.getMeterProvider();
  if (meterOf?.provider !== provider) {
    const meter = provider.getMeter(INSTRUMENTATION_NAME);
    const unseen = meter instanceof noop!.meterClass;
    if (unseen) warnIfRefused('meter', provider, globalRegistry()?.metrics);
    meterOf = { provider, meter: unseen ? undefined : meter };
  }
  return meterOf.meter;
}

let refusalReported = false;

/**
 * The API core loaded gives it another provider (`seen`, its no-op) than the one registered
 * globally (`registered`): another copy of the API registered it, one of an earlier minor version
 * than core's, which core's copy does not accept (a copy uses only what copies of its own or a
 * later minor registered). Executions then go unrecorded: said once, with the registering copy's version.
 */
function warnIfRefused(signal: 'tracer' | 'meter', seen: unknown, registered: unknown): void {
  if (registered === undefined || registered === seen || refusalReported) return;
  refusalReported = true;
  const version = globalRegistry()?.version;
  const by = typeof version === 'string' ? `@opentelemetry/api ${version}` : 'another copy of @opentelemetry/api';
  process.emitWarning(
    `An OpenTelemetry ${signal} provider is registered through ${by}, which the copy @kb-labs/plugin-execution-core loads does not accept (it is of a later minor version), so plugin executions are not recorded: give the host and core one copy of @opentelemetry/api (npm ls @opentelemetry/api)`,
    { code: 'KB_PLUGIN_EXECUTION_OTEL' },
  );
}

let reported = false;

/** An SDK that throws is reported once, as a process warning; the execution's result is unaffected. */
export function reportTelemetryFailure(error: unknown): void {
  if (reported) return;
  reported = true;
  let what: string;
  try {
    what = (error as Error)?.message ?? String(error);
  } catch {
    what = 'a value that cannot be shown';
  }
  process.emitWarning(`OpenTelemetry recording failed; executions go on: ${what}`, { code: 'KB_PLUGIN_EXECUTION_OTEL' });
}

/**
 * Record (or take) something through the SDK: what `record()` returns, or undefined when the SDK
 * throws, which is reported (once) and nothing else happens.
 */
export function recordQuietly<T>(record: () => T): T | undefined {
  try {
    return record();
  } catch (error) {
    reportTelemetryFailure(error);
    return undefined;
  }
}
