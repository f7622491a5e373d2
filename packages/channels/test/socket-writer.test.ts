// The writer's pacing on its own, over a stand-in for ws's WebSocket (an EventEmitter with its
// readyState and bufferedAmount): what a waiting send is told, without the network's timing.
import { EventEmitter, getEventListeners } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { WebSocket } from 'ws';
import { SocketWriter } from '../src/socket-writer.js';

class StandInSocket extends EventEmitter {
  readonly OPEN = 1;
  readyState = 1;
  bufferedAmount = 0;
}

const LIMIT = 1024;

function writer(ws: StandInSocket): SocketWriter {
  return new SocketWriter(ws as unknown as WebSocket, LIMIT, () => undefined);
}

describe('SocketWriter.drained', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('says false as soon as the socket closes, not at its next look at the backlog', async () => {
    vi.useFakeTimers();
    const ws = new StandInSocket();
    ws.bufferedAmount = LIMIT;
    let told: boolean | undefined;
    void writer(ws).drained().then((drained) => (told = drained));
    // Three looks, the backlog still full: the next is 40 ms away.
    await vi.advanceTimersByTimeAsync(5 + 10 + 20);
    expect(told).toBeUndefined();
    ws.readyState = 3;
    ws.emit('close');
    await Promise.resolve();
    // Before: told at the next look only (up to 200 ms later).
    expect(told).toBe(false);
    expect(ws.listenerCount('close')).toBe(0);
  });

  it("says true at the socket's drain, not at its next look at the backlog", async () => {
    vi.useFakeTimers();
    const ws = new StandInSocket();
    const socket = new EventEmitter();
    // ws's own socket, where the writer hears of a drain (it has no public handle on it).
    Object.assign(ws, { _socket: socket });
    ws.bufferedAmount = LIMIT;
    let told: boolean | undefined;
    void writer(ws).drained().then((drained) => (told = drained));
    await vi.advanceTimersByTimeAsync(5 + 10 + 20);
    ws.bufferedAmount = 0;
    socket.emit('drain');
    await Promise.resolve();
    // Before: told at the next look only (40 ms on here, up to 200 ms later).
    expect(told).toBe(true);
    expect(socket.listenerCount('drain')).toBe(0);
  });

  it('says true once the backlog is at most half the cap, its looks backing off to 200 ms; every waiting send shares them', async () => {
    vi.useFakeTimers();
    const ws = new StandInSocket();
    ws.bufferedAmount = LIMIT;
    const paced = writer(ws);
    const told: boolean[] = [];
    for (let i = 0; i < 50; i++) void paced.drained().then((drained) => told.push(drained));
    const looks = vi.getTimerCount();
    // One timer for the fifty.
    expect(looks).toBe(1);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(told).toEqual([]);
    expect(vi.getTimerCount()).toBe(1);
    ws.bufferedAmount = LIMIT / 2;
    await vi.advanceTimersByTimeAsync(200);
    expect(told).toEqual(Array.from({ length: 50 }, () => true));
    expect(vi.getTimerCount()).toBe(0);
  });

  it('says false to a send whose execution ended while it waited, and true at once when nothing waits', async () => {
    const ws = new StandInSocket();
    const paced = writer(ws);
    expect(await paced.drained()).toBe(true);
    ws.bufferedAmount = LIMIT;
    const ended = new AbortController();
    const waiting = paced.drained(ended.signal);
    ended.abort();
    expect(await waiting).toBe(false);
  });

  it("listens once to an execution's end however many of its sends wait (a flood of sends a handler does not await)", async () => {
    const ws = new StandInSocket();
    ws.bufferedAmount = LIMIT;
    const paced = writer(ws);
    const ended = new AbortController();
    const other = new AbortController();
    const told: boolean[] = [];
    for (let i = 0; i < 20_000; i++) void paced.drained(ended.signal).then((drained) => told.push(drained));
    const another = paced.drained(other.signal);
    // Before: a listener per waiting send, each added and removed by a walk over all the others
    // (250 000 un-awaited ctx.channel.send() held a host's event loop for seconds at a time).
    expect(getEventListeners(ended.signal, 'abort')).toHaveLength(1);
    expect(getEventListeners(other.signal, 'abort')).toHaveLength(1);
    ended.abort();
    await Promise.resolve();
    expect(told).toEqual(Array.from({ length: 20_000 }, () => false));
    expect(getEventListeners(ended.signal, 'abort')).toHaveLength(0);
    // Another execution's send waits on.
    expect(getEventListeners(other.signal, 'abort')).toHaveLength(1);
    ws.bufferedAmount = 0;
    expect(await another).toBe(true);
    expect(getEventListeners(other.signal, 'abort')).toHaveLength(0);
  });
});

/** A stand-in that also takes frames: ws's `send(data, [options], callback)`, whose callback says a frame was written. */
class StandInSender extends StandInSocket {
  readonly written: Array<() => void> = [];
  send(_data: unknown, optionsOrCallback: unknown, callback?: () => void): void {
    this.written.push((callback ?? optionsOrCallback) as () => void);
  }
}

describe('SocketWriter.send', () => {
  it('counts, besides the bytes waiting, only the frames sent since the buffer was last seen empty: frames the kernel took that ws has not said written yet do not cut the client off', () => {
    const ws = new StandInSender();
    let cut = 0;
    const sender = new SocketWriter(ws as unknown as WebSocket, LIMIT, () => cut++);
    // Ten frames the kernel takes at once (nothing waits in the buffer); ws says them written a tick later.
    for (let i = 0; i < 10; i++) expect(sender.send('x')).toBe(true);
    // Then one small frame waits: 10 bytes and its 256. Before: the ten taken counted 256 each too (2570 > 1024).
    ws.bufferedAmount = 10;
    expect(sender.send('y')).toBe(true);
    expect(cut).toBe(0);
  });

  it('weighs the frame to send with its 256 bytes of overhead too, against the cap', () => {
    const ws = new StandInSender();
    let cut = 0;
    const sender = new SocketWriter(ws as unknown as WebSocket, LIMIT, () => cut++);
    expect(sender.send('a')).toBe(true);
    // That frame waits: 500 bytes and its 256, 756 of the 1024. 20 more bytes fit; with their 256 they do not.
    ws.bufferedAmount = 500;
    expect(sender.send('b'.repeat(20))).toBe(false);
    expect(cut).toBe(1);
    expect(ws.written).toHaveLength(1);
  });

  it('no longer counts a frame ws has said written, though the buffer never emptied (a client that reads as fast as frames come)', () => {
    const ws = new StandInSender();
    let cut = 0;
    const sender = new SocketWriter(ws as unknown as WebSocket, LIMIT, () => cut++);
    expect(sender.send('a')).toBe(true);
    ws.bufferedAmount = 100;
    expect(sender.send('b')).toBe(true);
    expect(sender.send('c')).toBe(true);
    // a and b are written; c waits: 100 bytes and its 256. Before: all three counted (868), and d (257) passed the cap.
    ws.written[0]!();
    ws.written[1]!();
    expect(sender.send('d')).toBe(true);
    expect(cut).toBe(0);
  });
});
