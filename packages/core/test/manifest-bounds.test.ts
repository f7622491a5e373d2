/**
 * Each bound a manifest field has (docs/manifest.md gives the ones a plugin author meets first), at
 * its edge: the last value it takes is taken and the first past it refused, by the runtime (its
 * ValidationError naming the field) and by the shipped JSON Schema (what an editor checks) alike.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { PluginRegistry, ValidationError } from '@kb-labs/plugin-execution-core';
import { describe, expect, it } from 'vitest';

const require = createRequire(import.meta.url);
const shipped = JSON.parse(readFileSync(require.resolve('@kb-labs/plugin-execution-core/kb.plugin.schema.json'), 'utf8')) as Record<string, any>;
const handlerSchema = shipped.properties.handlers.additionalProperties;
const channelSchema = shipped.properties.channels.items;

type Node = Record<string, any>;

/** What the JSON Schema says of `value` at `node`, for the keywords these fields use (a string's length and pattern, an integer's range). */
function schemaTakes(node: Node, value: unknown): boolean {
  if (node.type === 'string') {
    if (typeof value !== 'string') return false;
    const length = [...value].length;
    return (node.minLength === undefined || length >= node.minLength) && (node.maxLength === undefined || length <= node.maxLength) && (node.pattern === undefined || new RegExp(node.pattern, 'u').test(value));
  }
  if (node.type === 'integer') {
    if (typeof value !== 'number' || !Number.isInteger(value)) return false;
    return (node.minimum === undefined || value >= node.minimum) && (node.exclusiveMinimum === undefined || value > node.exclusiveMinimum) && (node.maximum === undefined || value <= node.maximum);
  }
  throw new Error(`schemaTakes has no check for type ${String(node.type)}`);
}

interface Edge {
  /** The field, as a ValidationError's issue names it. */
  path: (value: unknown) => string;
  /** Where it is in the JSON Schema. */
  schema: Node;
  /** A manifest with `value` in the field. */
  manifest: (value: unknown) => Record<string, unknown>;
  /** The last values taken, and the first refused, at each end. */
  taken: unknown[];
  refused: unknown[];
}

const handler = (spec: Record<string, unknown>) => ({ id: '@x/bounds', version: '1.0.0', handlers: { run: { entry: 'run.mjs', ...spec } } });
const channel = (spec: Record<string, unknown>) => ({ ...handler({}), channels: [{ path: '/chat', handler: 'run', ...spec }] });
const LONGEST_TIMER = 2 ** 31 - 1;

const EDGES: Record<string, Edge> = {
  'id (at most 214 characters)': { path: () => 'id', schema: shipped.properties.id, manifest: (id) => ({ ...handler({}), id }), taken: [`@a/${'b'.repeat(211)}`], refused: [`@a/${'b'.repeat(212)}`] },
  'version (at most 256 characters)': { path: () => 'version', schema: shipped.properties.version, manifest: (version) => ({ ...handler({}), version }), taken: ['v'.repeat(256)], refused: ['v'.repeat(257)] },
  'description (at most 10,000 characters)': { path: () => 'description', schema: shipped.properties.description, manifest: (description) => ({ ...handler({}), description }), taken: ['d'.repeat(10_000)], refused: ['d'.repeat(10_001)] },
  'a handler id (at most 128 characters)': {
    path: (id) => `handlers.${String(id)}`,
    schema: shipped.properties.handlers.propertyNames,
    manifest: (id) => ({ ...handler({}), handlers: { [String(id)]: { entry: 'run.mjs' } } }),
    taken: ['h'.repeat(128)],
    refused: ['h'.repeat(129)],
  },
  'handler timeoutMs (1 to the longest timer)': { path: () => 'handlers.run.timeoutMs', schema: handlerSchema.properties.timeoutMs, manifest: (timeoutMs) => handler({ timeoutMs }), taken: [1, LONGEST_TIMER], refused: [0, LONGEST_TIMER + 1] },
  'handler memoryMb (8 to 65,536)': { path: () => 'handlers.run.memoryMb', schema: handlerSchema.properties.memoryMb, manifest: (memoryMb) => handler({ memoryMb }), taken: [8, 65_536], refused: [7, 65_537] },
  'handler description (at most 10,000 characters)': { path: () => 'handlers.run.description', schema: handlerSchema.properties.description, manifest: (description) => handler({ description }), taken: ['d'.repeat(10_000)], refused: ['d'.repeat(10_001)] },
  'channel maxPayload (1 byte to 100 MiB)': { path: () => 'channels[0].maxPayload', schema: channelSchema.properties.maxPayload, manifest: (maxPayload) => channel({ maxPayload }), taken: [1, 100 * 1024 * 1024], refused: [0, 100 * 1024 * 1024 + 1] },
  'channel concurrency (1 to 1,024)': { path: () => 'channels[0].concurrency', schema: channelSchema.properties.concurrency, manifest: (concurrency) => channel({ concurrency }), taken: [1, 1024], refused: [0, 1025] },
  'channel maxInFlight (1 to 100,000)': { path: () => 'channels[0].maxInFlight', schema: channelSchema.properties.maxInFlight, manifest: (maxInFlight) => channel({ maxInFlight }), taken: [1, 100_000], refused: [0, 100_001] },
  'channel timeoutMs (1 to the longest timer)': { path: () => 'channels[0].timeoutMs', schema: channelSchema.properties.timeoutMs, manifest: (timeoutMs) => channel({ timeoutMs }), taken: [1, LONGEST_TIMER], refused: [0, LONGEST_TIMER + 1] },
};

/** The ValidationError registering `manifest` throws, or undefined when it registers. */
function refusal(manifest: Record<string, unknown>): ValidationError | undefined {
  try {
    new PluginRegistry().register({ root: process.cwd(), manifest });
    return undefined;
  } catch (error) {
    if (error instanceof ValidationError) return error;
    throw error;
  }
}

describe('a manifest field at the edge of its bounds: the runtime and the JSON Schema agree', () => {
  it.each(Object.keys(EDGES))('%s', (name) => {
    const edge = EDGES[name]!;
    for (const value of edge.taken) {
      const shown = typeof value === 'string' ? `${value.length} characters` : String(value);
      expect(refusal(edge.manifest(value))?.message, `runtime takes ${shown}`).toBeUndefined();
      expect(schemaTakes(edge.schema, value), `JSON Schema takes ${shown}`).toBe(true);
    }
    for (const value of edge.refused) {
      const shown = typeof value === 'string' ? `${value.length} characters` : String(value);
      const error = refusal(edge.manifest(value));
      expect(error, `runtime refuses ${shown}`).toBeInstanceOf(ValidationError);
      expect((error!.details.issues as Array<{ path: string }>).map((issue) => issue.path), `runtime names the field for ${shown}`).toEqual([edge.path(value)]);
      expect(schemaTakes(edge.schema, value), `JSON Schema refuses ${shown}`).toBe(false);
    }
  });
});
