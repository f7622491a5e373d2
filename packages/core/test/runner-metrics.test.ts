/**
 * The runner counters a backend of its own records through the backend kit (recordRunnerStart,
 * recordRunnerCrash), read the way a host reads them: the real SDK registered globally, its data
 * points collected. The conformance suite checks them only for backends that isolate crashes on
 * the host's machine, and always with a reason.
 */
import { metrics } from '@opentelemetry/api';
import { AggregationTemporality, MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { afterEach, describe, expect, it } from 'vitest';
import { recordRunnerCrash, recordRunnerStart } from '../src/backend-kit.js';

/** A reader that collects when asked. */
class OnDemandReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
  }
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

let provider: MeterProvider | undefined;

afterEach(async () => {
  metrics.disable();
  await provider?.shutdown();
  provider = undefined;
});

/** The data points of `name` as a host's exporter gets them: each one's attributes and value. */
async function points(reader: OnDemandReader, name: string) {
  const { resourceMetrics } = await reader.collect();
  const found = resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics).filter((metric) => metric.descriptor.name === name);
  return found.flatMap((metric) => metric.dataPoints.map(({ attributes, value }) => ({ attributes, value })));
}

describe('runner counters recorded through the backend kit', () => {
  it('a crash whose reason is not known is counted by backend only: no crash.reason attribute, not one whose value is undefined', async () => {
    const reader = new OnDemandReader();
    provider = new MeterProvider({ readers: [reader] });
    metrics.setGlobalMeterProvider(provider);
    recordRunnerStart('tiny');
    recordRunnerCrash('tiny');
    recordRunnerCrash('tiny', 'exit');
    expect(await points(reader, 'kb.plugin_execution.runner.starts')).toStrictEqual([{ attributes: { 'kb.plugin_execution.backend': 'tiny' }, value: 1 }]);
    // An attribute whose value is undefined is no valid attribute value: exporters write it as an empty value, or "undefined".
    const crashes = await points(reader, 'kb.plugin_execution.runner.crashes');
    expect(crashes).toHaveLength(2);
    expect(crashes).toContainEqual({ attributes: { 'kb.plugin_execution.backend': 'tiny' }, value: 1 });
    expect(crashes.map((point) => Object.keys(point.attributes))).toStrictEqual([['kb.plugin_execution.backend'], ['kb.plugin_execution.backend', 'kb.plugin_execution.crash.reason']]);
    expect(crashes[1]).toStrictEqual({ attributes: { 'kb.plugin_execution.backend': 'tiny', 'kb.plugin_execution.crash.reason': 'exit' }, value: 1 });
  });

  it("a reason that is no CrashReason (a remote runner's, over the wire) is counted as 'other': a metric's attribute values stay a few", async () => {
    const reader = new OnDemandReader();
    provider = new MeterProvider({ readers: [reader] });
    metrics.setGlobalMeterProvider(provider);
    for (let i = 0; i < 3; i++) recordRunnerCrash('queue', `forged-${i}-${'x'.repeat(1000)}`);
    recordRunnerCrash('queue', 'runner-lost');
    const crashes = await points(reader, 'kb.plugin_execution.runner.crashes');
    // Before: a series per word, each 1 KB long.
    expect(crashes).toHaveLength(2);
    expect(crashes).toContainEqual({ attributes: { 'kb.plugin_execution.backend': 'queue', 'kb.plugin_execution.crash.reason': 'other' }, value: 3 });
    expect(crashes).toContainEqual({ attributes: { 'kb.plugin_execution.backend': 'queue', 'kb.plugin_execution.crash.reason': 'runner-lost' }, value: 1 });
  });
});
