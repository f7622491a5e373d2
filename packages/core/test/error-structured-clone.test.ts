/**
 * docs/errors.md ("Across boundaries and versions"): a result's error sent on with a structured
 * clone (structuredClone, postMessage, v8.serialize) arrives as a plain Error, V8's behaviour, and
 * its wire form (serializeError / deserializeError) through the same clone keeps it whole. The
 * page says both, with the snippet the doc-snippets test compiles.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import v8 from 'node:v8';
import { MessageChannel } from 'node:worker_threads';
import { TimeoutError, deserializeError, serializeError } from '@kb-labs/plugin-execution-core';
import { expect, it } from 'vitest';

const timeout = () => new TimeoutError('gave up', { details: { timeoutMs: 5, waitingFor: ['platform.kv.get'] } });

/** `value` as the other end of a real MessageChannel gets it. */
function posted<T>(value: T): Promise<T> {
  const { port1, port2 } = new MessageChannel();
  return new Promise((resolve) => {
    port2.once('message', (message: T) => {
      port2.close();
      resolve(message);
    });
    port1.postMessage(value);
  });
}

it('a structured clone of an error keeps neither its class, code nor details; its wire form keeps all three; docs/errors.md says so', async () => {
  const clones = [structuredClone(timeout()), await posted(timeout()), v8.deserialize(v8.serialize(timeout())) as unknown];
  for (const clone of clones) {
    expect(clone).toBeInstanceOf(Error);
    expect(clone).not.toBeInstanceOf(TimeoutError);
    expect(clone).toMatchObject({ name: 'Error', message: 'gave up' });
    expect((clone as { code?: unknown }).code).toBeUndefined();
    expect((clone as { details?: unknown }).details).toBeUndefined();
  }
  const wire = [structuredClone(serializeError(timeout())), await posted(serializeError(timeout())), v8.deserialize(v8.serialize(serializeError(timeout())))];
  for (const sent of wire) {
    const back = deserializeError(sent);
    expect(back).toBeInstanceOf(TimeoutError);
    expect(back).toMatchObject({ code: 'TIMEOUT', details: { timeoutMs: 5, waitingFor: ['platform.kv.get'] }, message: 'gave up' });
  }
  // Before: the page spoke of the JSON wire form only, and a host that posted results on lost their codes unwarned.
  const page = await readFile(path.join(import.meta.dirname, '..', '..', '..', 'docs', 'errors.md'), 'utf8');
  const across = page.slice(page.indexOf('## Across boundaries and versions'));
  expect(across).toMatch(/`structuredClone`, `postMessage`[^]*`v8\.serialize`[^]*class[^]*`code`, `details`[^]*are lost/);
  expect(across).toMatch(/serializeError\(result\.error\)[^]*deserializeError\(/);
});
