import { describe, expect, it } from 'vitest';
import { decode, encode, type TaskBody } from '../src/shared/wire.js';

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
