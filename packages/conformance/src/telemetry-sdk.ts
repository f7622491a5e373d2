/**
 * The real OpenTelemetry SDK, registered globally the way a host registers it (no mocks): spans
 * into an in-memory exporter, metrics read on demand, the AsyncLocalStorage context manager so
 * that the caller's active span is the parent. `install()` before a test, `uninstall()` after it.
 */
import { ROOT_CONTEXT, context, metrics, trace, type Attributes, type Context, type ContextManager } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { AggregationTemporality, DataPointType, MeterProvider, MetricReader, type DataPoint, type Histogram, type MetricData } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';

/** A reader that collects when asked (the SDK's own tests use the same). */
class OnDemandReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
  }
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

/** One metric data point: its attributes and its value (a number, or a histogram's summary). */
export interface Point {
  attributes: Attributes;
  value: number | Histogram;
}

/** A metric instrument as the SDK exports it. */
export interface Instrument {
  scope: string;
  name: string;
  /** `HISTOGRAM`, `COUNTER` or `UP_DOWN_COUNTER` (from its data points' type and monotonicity). */
  type: string;
  unit: string;
  boundaries?: number[];
}

export interface TestSdk {
  /** Every span ended so far. */
  spans(): ReadableSpan[];
  /** The data points of `name` now (cumulative since install). */
  points(name: string): Promise<Point[]>;
  /** Every instrument recorded so far: its meter's name, its kind and unit, and a histogram's bucket boundaries. */
  instruments(): Promise<Instrument[]>;
  uninstall(): Promise<void>;
}

/** Register a fresh tracer provider, meter provider and context manager as the globals. */
export function installTestSdk(): TestSdk {
  const exporter = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const reader = new OnDemandReader();
  const meterProvider = new MeterProvider({ readers: [reader] });
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  trace.setGlobalTracerProvider(tracerProvider);
  metrics.setGlobalMeterProvider(meterProvider);
  return {
    spans: () => exporter.getFinishedSpans(),
    async points(name) {
      const { resourceMetrics } = await reader.collect();
      const found = resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics).filter((metric) => metric.descriptor.name === name);
      return found.flatMap((metric) => (metric.dataPoints as Array<DataPoint<number | Histogram>>).map(({ attributes, value }) => ({ attributes, value })));
    },
    async instruments() {
      const { resourceMetrics } = await reader.collect();
      return resourceMetrics.scopeMetrics.flatMap((scope) =>
        scope.metrics.map((metric) => {
          const buckets = (metric.dataPoints[0]?.value as Histogram | undefined)?.buckets;
          return { scope: scope.scope.name, name: metric.descriptor.name, type: instrumentType(metric), unit: metric.descriptor.unit, ...(buckets ? { boundaries: buckets.boundaries } : {}) };
        }),
      );
    },
    async uninstall() {
      trace.disable();
      metrics.disable();
      context.disable();
      contextManager.disable();
      await Promise.all([tracerProvider.shutdown(), meterProvider.shutdown()]);
    },
  };
}

/** The kind of instrument that recorded `metric`, as its data says it. */
function instrumentType(metric: MetricData): string {
  if (metric.dataPointType === DataPointType.HISTOGRAM) return 'HISTOGRAM';
  if (metric.dataPointType === DataPointType.SUM) return metric.isMonotonic ? 'COUNTER' : 'UP_DOWN_COUNTER';
  return DataPointType[metric.dataPointType];
}

/** The sum of the values (or histogram counts) of the points whose attributes include `match`. */
export function total(points: Point[], match: Attributes = {}): number {
  let sum = 0;
  for (const point of points) {
    if (!Object.entries(match).every(([key, value]) => point.attributes[key] === value)) continue;
    sum += typeof point.value === 'number' ? point.value : point.value.count;
  }
  return sum;
}

/**
 * An SDK a host got wrong, registered as the global like installTestSdk: `tracer`, a tracer
 * provider whose span processor throws when a span ends (and no context manager, as a host that
 * registers only that); `meter`, a meter provider that throws when asked for a meter;
 * `context-twice` / `context-later`, a context manager whose `with()` calls its function twice, or
 * only after it returned (beside a working tracer provider).
 */
export function installFailingSdk(part: 'tracer' | 'meter' | 'context-twice' | 'context-later'): { uninstall(): Promise<void> } {
  if (part === 'context-twice' || part === 'context-later') return installBrokenContextManager(part === 'context-twice' ? 'twice' : 'later');
  if (part === 'meter') {
    metrics.setGlobalMeterProvider({
      getMeter: () => {
        throw new Error('getMeter failed');
      },
    });
    return { uninstall: async () => metrics.disable() };
  }
  const failing = {
    onStart: () => undefined,
    onEnd: () => {
      throw new Error('span processor onEnd failed');
    },
    forceFlush: async () => undefined,
    shutdown: async () => undefined,
  };
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [failing] });
  trace.setGlobalTracerProvider(tracerProvider);
  return {
    async uninstall() {
      trace.disable();
      await tracerProvider.shutdown();
    },
  };
}

/**
 * installTestSdk with one signal's provider replaced by one that breaks as in installFailingSdk
 * (`tracer`: the span processor throws at onEnd; `meter`: getMeter throws): what the other
 * signal records is read as usual.
 */
export function installHalfBrokenSdk(broken: 'tracer' | 'meter'): TestSdk {
  const sdk = installTestSdk();
  if (broken === 'meter') metrics.disable();
  else trace.disable();
  const failing = installFailingSdk(broken);
  return {
    ...sdk,
    async uninstall() {
      await failing.uninstall();
      await sdk.uninstall();
    },
  };
}

function installBrokenContextManager(how: 'twice' | 'later'): { uninstall(): Promise<void> } {
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(new InMemorySpanExporter())] });
  trace.setGlobalTracerProvider(tracerProvider);
  const root = ROOT_CONTEXT;
  const manager: ContextManager = {
    active: () => root,
    with: <A extends unknown[], F extends (...args: A) => ReturnType<F>>(_context: Context, fn: F, thisArg?: ThisParameterType<F>, ...args: A): ReturnType<F> => {
      if (how === 'later') {
        setTimeout(() => fn.apply(thisArg, args), 0);
        return undefined as ReturnType<F>;
      }
      fn.apply(thisArg, args);
      return fn.apply(thisArg, args);
    },
    bind: <T>(_context: Context, target: T): T => target,
    enable() {
      return this;
    },
    disable() {
      return this;
    },
  };
  context.setGlobalContextManager(manager);
  return {
    async uninstall() {
      context.disable();
      trace.disable();
      await tracerProvider.shutdown();
    },
  };
}
