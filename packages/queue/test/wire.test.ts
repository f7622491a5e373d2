import net from 'node:net';
import { ValidationError } from '@kb-labs/plugin-execution-core';
import { describe, expect, it } from 'vitest';
import { headers } from '@nats-io/transport-node';
import { decode, encode, encodeTask, HEADER, makeHeaders, readHeaders, taskHeaders, type TaskBody } from '../src/shared/wire.js';

// A host and its workers may run different Node majors (a fleet upgraded one machine at a time).
// Bodies are v8.serialize'd: this is a task body as Node 20.20, 22.23 and 24.22 all encode it
// (byte for byte the same: V8's serialisation format 15 on each). Every Node that runs this test
// (CI on 20, the node matrix on 22 and 24) must write exactly these bytes and read them back.
const RECORDED =
  '/w9vIgtleGVjdXRpb25JZCIDZS0xIghwbHVnaW5JZCIEQHQvcCINcGx1Z2luVmVyc2lvbiIFMS4wLjAiCWhhbmRsZXJJZCIBaCIFaW5wdXRvIgJhdEQAAAAAAAAAACIEdGFnczsiAWFJAjoCIgNpZHMnWhABAAAAAAAAACwBIgVieXRlc1wBAwECAyIEbGlzdEEESQIiA3R3bzBOAAAAAAAADEAkAAQiA2VycnJSbSIEYm9vbXMiEFJhbmdlRXJyb3I6IGJvb20uewYiDGlucHV0Rm9sbG93c0YiB2NvbnRleHRvewAiCXRpbWVvdXRNc0nQDyIJd29ya3NwYWNlRiINa2VlcFdvcmtzcGFjZUZ7Cg==';

function taskBody(): TaskBody {
  const err = Object.assign(new RangeError('boom'), { stack: 'RangeError: boom' });
  return {
    executionId: 'e-1',
    pluginId: '@t/p',
    pluginVersion: '1.0.0',
    handlerId: 'h',
    input: { at: new Date(0), tags: new Map([['a', 1]]), ids: new Set([1n]), bytes: new Uint8Array([1, 2, 3]), list: [1, 'two', null, 3.5], err },
    inputFollows: false,
    context: {},
    timeoutMs: 1000,
    workspace: false,
    keepWorkspace: false,
  };
}

describe('the wire format across Node majors', () => {
  it(`encodes a task body to the bytes Node 20, 22 and 24 write (this is ${process.version})`, () => {
    expect(Buffer.from(encode(taskBody(), 'the task')).toString('base64')).toBe(RECORDED);
  });

  it('decodes those bytes to the same values: dates, maps, sets, bigints, bytes and errors survive', () => {
    const task = decode<TaskBody>(Buffer.from(RECORDED, 'base64'));
    const input = task.input as ReturnType<typeof taskBody>['input'] & Record<string, unknown>;
    expect(task).toMatchObject({ executionId: 'e-1', pluginId: '@t/p', pluginVersion: '1.0.0', handlerId: 'h', timeoutMs: 1000 });
    expect(input).toMatchObject({ at: new Date(0), tags: new Map([['a', 1]]), ids: new Set([1n]), list: [1, 'two', null, 3.5] });
    expect(input.bytes).toEqual(new Uint8Array([1, 2, 3]));
    expect(input.err).toBeInstanceOf(RangeError);
    expect((input.err as Error).message).toBe('boom');
  });
});

describe('headers', () => {
  it('reads ours and the task id in one pass, each one\'s first value as MsgHdrs.get() gives it, and nothing else', () => {
    const h = taskHeaders('e-1', '_INBOX.caller', 3000);
    h.append('Nats-Msg-Id', 'task-1');
    h.append(HEADER.executionId, 'e-2');
    h.append('X-Other', 'ignored');
    const read = readHeaders({ headers: h });
    expect(read).toEqual({ kind: 'task', executionId: 'e-1', reply: '_INBOX.caller', lostMs: '3000', protocol: '2', msgId: 'task-1', part: undefined, transfer: undefined, outputSent: undefined, refused: undefined });
    for (const [field, name] of Object.entries(HEADER)) expect(read[field as keyof typeof HEADER] ?? '').toBe(h.get(name));
  });

  it('reads a message without headers, or with none of ours, as all undefined', () => {
    expect(Object.values(readHeaders({})).every((value) => value === undefined)).toBe(true);
    const other = headers();
    other.append('kb-kind', 'task');
    expect(readHeaders({ headers: other }).kind).toBeUndefined();
  });

  it('makes each header once', () => {
    const h = makeHeaders('result', 'e-1');
    expect([...h].map(([name, values]) => [name, values.length])).toEqual([[HEADER.kind, 1], [HEADER.executionId, 1]]);
  });
});

describe('encodeTask', () => {
  it("refuses an object of Node's own that v8 would write as {} (a SocketAddress on Node 22 and 24), naming where, on every Node", () => {
    const body = { ...taskBody(), input: { echo: { n: 1, at: structuredClone(new net.SocketAddress({ address: '127.0.0.1' })) } } };
    let refused: unknown;
    try {
      encodeTask(body);
    } catch (error) {
      refused = error;
    }
    // Before (Node 22 and 24): encoded, the handler got { n: 1, at: {} }.
    expect(refused).toBeInstanceOf(ValidationError);
    expect((refused as ValidationError).details).toMatchObject({ reason: 'not-serializable', path: 'input.echo.at' });
  });
});
