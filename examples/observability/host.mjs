// An observed host: registers the OpenTelemetry SDK (traces and metrics, console exporters, the
// AsyncLocalStorage context manager) the way a host application does at start-up, then runs
// executions on the worker-pool backend inside a span of its own. Every execution's span is a
// child of that span; each ctx.platform call is a child of the execution; the handler, on a
// worker thread, gets the execution's traceparent as ctx.traceparent. Run: node host.mjs
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { context, metrics, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { ConsoleMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, ConsoleSpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { WorkerPoolBackend } from '@kb-labs/plugin-execution-worker-pool';

// 1. The SDK, registered globally: @kb-labs/plugin-execution finds it through @opentelemetry/api.
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(new ConsoleSpanExporter())] });
trace.setGlobalTracerProvider(tracerProvider);
const meterProvider = new MeterProvider({ readers: [new PeriodicExportingMetricReader({ exporter: new ConsoleMetricExporter(), exportIntervalMillis: 60_000 })] });
metrics.setGlobalMeterProvider(meterProvider);

// 2. A backend, as any host makes one.
const plugin = path.join(path.dirname(fileURLToPath(import.meta.url)), 'plugin');
const quotes = { pick: async (topic) => `"Simplicity is prerequisite for reliability" (${topic})` };
const backend = new WorkerPoolBackend({ plugins: [plugin], platform: { quotes }, permissions: { platform: { quotes: true } }, workspace: false, maxThreads: 1 });

// 3. Executions inside a span of the host's own (say, the HTTP request being served).
const tracer = trace.getTracer('example-host');
await tracer.startActiveSpan('GET /quote', async (request) => {
  const ok = await backend.execute(
    { pluginId: '@examples/observed', handlerId: 'quote', input: { topic: 'software' } },
    { onLog: (entry) => console.log(`log [trace ${entry.traceId} span ${entry.spanId}] ${entry.message}`) },
  );
  console.log('result:', JSON.stringify(ok.ok ? ok.data : ok.error.code));
  const failed = await backend.execute({ pluginId: '@examples/observed', handlerId: 'fail' });
  console.log('result:', failed.ok ? 'ok' : `${failed.error.code}: ${failed.error.message}`);
  request.end();
});

// 4. At exit: stop the backend, then the SDK (each provider's shutdown exports what it still holds, once).
await backend.shutdown();
await Promise.all([meterProvider.shutdown(), tracerProvider.shutdown()]);
