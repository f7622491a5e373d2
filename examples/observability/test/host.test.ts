// Runs the example host as a user would (`node host.mjs`) and checks what its console exporters
// print: the execution span under the host's own span, the platform call under the execution,
// the handler's traceparent naming the execution span, log lines carrying the ids, and the metrics.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The span printed with `name: '<name>'`: its id, trace id and parent span id. */
function spanNamed(output: string, name: string): { id: string; traceId: string; parentId: string | undefined } {
  const at = output.indexOf(`name: '${name}'`);
  expect(at, `a span named ${name}`).toBeGreaterThan(-1);
  const start = output.lastIndexOf('resource:', at);
  const block = output.slice(start, output.indexOf('links:', at));
  const parent = /parentSpanContext: \{\s*traceId: '[0-9a-f]+',\s*spanId: '([0-9a-f]+)'/.exec(block);
  return { id: /\bid: '([0-9a-f]{16})'/.exec(block)![1]!, traceId: /traceId: '([0-9a-f]{32})'/.exec(block)![1]!, parentId: parent?.[1] };
}

it('host.mjs prints the execution spans, their platform calls and the metrics', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, [path.join(here, '..', 'host.mjs')], { cwd: path.join(here, '..') });
  const request = spanNamed(stdout, 'GET /quote');
  const quote = spanNamed(stdout, 'execute @examples/observed/quote');
  const pick = spanNamed(stdout, 'platform quotes.pick');
  const fail = spanNamed(stdout, 'execute @examples/observed/fail');
  expect(quote.parentId).toBe(request.id);
  expect(fail.parentId).toBe(request.id);
  expect(pick.parentId).toBe(quote.id);
  expect(new Set([request.traceId, quote.traceId, pick.traceId, fail.traceId]).size).toBe(1);
  expect(stdout).toContain(`"traceparent":"00-${quote.traceId}-${quote.id}-01"`);
  expect(stdout).toContain(`log [trace ${quote.traceId} span ${quote.id}] picking a quote`);
  expect(stdout).toContain("message: 'HANDLER_ERROR: the quote service is down'");
  for (const metric of ['kb.plugin_execution.duration', 'kb.plugin_execution.queue.wait_time', 'kb.plugin_execution.executions', 'kb.plugin_execution.runner.starts']) {
    // Once: before, a forceFlush() ahead of the reader's shutdown (which exports what it holds) printed every metric twice.
    expect(stdout.split(`name: '${metric}'`).length - 1, metric).toBe(1);
  }
}, 30_000);
