import type { ExecutionResult } from '@kb-labs/plugin-execution-core';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { expect } from 'vitest';

/** Attribute names of docs/observability.md that the telemetry tests read. */
export const PLUGIN = 'kb.plugin_execution.plugin.id';
export const HANDLER = 'kb.plugin_execution.handler.id';
export const OUTCOME = 'kb.plugin_execution.outcome';

/** The one span of `result`'s execution among `spans` (found by its execution id). */
export function executionSpan(spans: ReadableSpan[], result: ExecutionResult): ReadableSpan {
  const found = spans.filter((span) => span.attributes['kb.plugin_execution.execution.id'] === result.meta.executionId);
  expect(found, `one execution span for ${result.meta.executionId}`).toHaveLength(1);
  return found[0]!;
}
