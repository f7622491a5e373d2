import { serialize } from 'node:v8';
import { describe, expect, it } from 'vitest';
import type { cloneForWire as CloneForWire, unserializableError as UnserializableError } from '@kb-labs/plugin-execution-core/backend-kit';
import { loadInJestLikeRealm } from './jest-like-realm.js';

// A host's test file under Jest runs core in a vm context of its own, while structuredClone, which
// Jest hands it from Node, throws errors of Node's realm: instanceof Error finds none of them.
const { cloneForWire, unserializableError } = loadInJestLikeRealm<{ cloneForWire: typeof CloneForWire; unserializableError: typeof UnserializableError }>(
  '@kb-labs/plugin-execution-core/backend-kit',
);

function refusal(value: unknown, what: string): { message: string; details: Record<string, unknown> } {
  try {
    cloneForWire(value, what);
  } catch (error) {
    return error as { message: string; details: Record<string, unknown> };
  }
  throw new Error('cloneForWire took it');
}

describe('cloneForWire in a host run in a vm context (a test file under Jest)', () => {
  it("refuses a host service's answer holding a function without quoting the function's source, as in a plain host", () => {
    const answer = { when: new Date(0), secretFn: function leak() { return 'API_KEY=hunter2'; } };
    const error = refusal(answer, 'platform.kv.get result');
    expect(error.message).toBe('platform.kv.get result cannot be sent across the execution boundary: A function could not be cloned. (at result.secretFn)');
    expect(error.message).not.toContain('hunter2');
  });

  it('finds where the refused value is in Maps, Sets and promises of that other realm', () => {
    const at = (value: unknown): string => refusal(value, 'result').message.replace(/^.* \(at (.*)\)$/, '$1');
    expect(at({ when: new Date(0), m: new Map([['k', () => 1]]) })).toBe('result.m.k');
    expect(at({ when: new Date(0), s: new Set([() => 1]) })).toBe('result.s[0]');
    expect(at({ when: new Date(0), list: [1, Promise.resolve(1)] })).toBe('result.list[1]');
  });

  it('says a value nested too deeply to serialise is too deep', () => {
    let deep: Record<string, unknown> = { when: new Date(0) };
    for (let i = 0; i < 100_000; i++) deep = { deep };
    expect(refusal(deep, 'input').details).toEqual({ what: 'input', reason: 'too-deep' });
  });
  it("refuses node:v8's plain Error (what the subprocess and queue wires throw, of Node's realm) without quoting the function's source", () => {
    const answer = { secretFn: function leak() { return 'API_KEY=hunter2'; } };
    let thrown: unknown;
    try {
      serialize(answer);
    } catch (error) {
      thrown = error;
    }
    expect((thrown as Error).message).toContain('hunter2');
    const error = unserializableError('platform.kv.get result', thrown, answer);
    expect(error.message).toBe('platform.kv.get result cannot be sent across the execution boundary: A function could not be cloned. (at result.secretFn)');
    expect((error.cause as Error).message).not.toContain('hunter2');
  });
});
