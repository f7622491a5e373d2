import { describe, expect, it } from 'vitest';
import { outputSentOf, resultProblem, startProblem } from '../src/host/worker-bodies.js';

// What a host makes of the bodies a worker (or a peer with a worker's credentials) sends: the
// hostile tests send some through a real server; these are the shapes they do not reach.
describe('resultProblem', () => {
  it('names what is wrong with a result that is not ok and true or false, or not ok without an error object', () => {
    expect(resultProblem({ ok: 'yes', data: 1 })).toBe('its ok is a string of 3 character(s), not true or false');
    expect(resultProblem({ data: 1 })).toBe('its ok is undefined, not true or false');
    expect(resultProblem({ ok: false })).toBe('it is not ok, and its error is undefined, not an object');
    expect(resultProblem({ ok: false, error: ['HANDLER_ERROR'] })).toBe('it is not ok, and its error is an array, not an object');
    expect(resultProblem({ ok: true, data: 1, meta: 7 })).toBe('its meta is a number, not an object');
    expect(resultProblem('result')).toBe('it is a string of 6 character(s), not an object');
  });

  it('takes a result of the shape workers send, its first artifact checked as the rest', () => {
    expect(resultProblem({ ok: true, data: undefined })).toBeUndefined();
    expect(resultProblem({ ok: false, error: { code: 'HANDLER_ERROR' }, meta: { artifacts: ['a.txt'], pid: 12, threadId: 0, workspaceDir: '/w' } })).toBeUndefined();
    expect(resultProblem({ ok: true, meta: { artifacts: [3, 'b.txt'] } })).toBe('its meta.artifacts[0] is a number, not a file name');
  });
});

describe('startProblem', () => {
  it('names a body that is no object, and takes one of the shape workers send', () => {
    expect(startProblem(undefined)).toBe('it is undefined, not an object');
    expect(startProblem({ worker: { id: 'w1', host: 'h', pid: Number.POSITIVE_INFINITY } })).toBe('its worker.pid is Infinity, not a process id');
    expect(startProblem({ worker: { id: 'w1', host: 'h', pid: 1 }, task: 't' })).toBeUndefined();
  });
});

describe('outputSentOf', () => {
  it('takes a count its worker could have sent, and no other', () => {
    expect(outputSentOf('0', 0)).toBe(0);
    // Within the first millisecond, as many as in one.
    expect(outputSentOf('1000', 0)).toBe(1000);
    expect(outputSentOf('1001', 0)).toBeUndefined();
    expect(outputSentOf('5000', 5)).toBe(5000);
    expect(outputSentOf('5001', 5)).toBeUndefined();
    expect(outputSentOf('-1', 1000)).toBeUndefined();
    expect(outputSentOf('1.5', 1000)).toBeUndefined();
    expect(outputSentOf(undefined, 1000)).toBeUndefined();
  });
});
