import { describe, expect, it } from 'vitest';
import { ConnectionRegistry, type ChannelConnection } from '../src/connection-registry.js';

const CHANNEL = '/ws/rooms/:room';

/** A connection of the host's own making (the registry takes those), recording what it was sent and counting reads of its id. */
function connection(id: string, path: string, channel = CHANNEL, reads = { id: 0 }): ChannelConnection & { got: string[] } {
  const got: string[] = [];
  return {
    get id() {
      reads.id++;
      return id;
    },
    channel,
    info: { id, channel, pluginId: '@t/p', path, params: {}, query: {}, headers: {}, connectedAt: 0 },
    isOpen: true,
    bufferedAmount: 0,
    sendText(text: string | Buffer) {
      got.push(JSON.parse(String(text)).data);
      return true;
    },
    close() {},
    got,
  };
}

describe('ConnectionRegistry.broadcast to one room', () => {
  it("looks at that room's connections only, not at every connection of the channel (5,000 on it, 10 in the room)", () => {
    const registry = new ConnectionRegistry();
    const reads = { id: 0 };
    const all = Array.from({ length: 5000 }, (_, i) => connection(`c${i}`, `/ws/rooms/room-${i % 500}`, CHANNEL, reads));
    for (const each of all) registry.register(each);
    reads.id = 0;
    // exclude: each member's id is read to see whether it is left out.
    expect(registry.broadcast(CHANNEL, 'hello', { path: '/ws/rooms/room-7', exclude: ['c7'] })).toBe(9);
    expect(reads.id).toBe(10);
    expect(all.filter((each) => each.got.length > 0).map((each) => each.info.id)).toEqual(Array.from({ length: 9 }, (_, i) => `c${7 + 500 * (i + 1)}`));
  });

  it('reaches exactly the connections in the room now, in the order they connected, through registrations and departures', () => {
    const registry = new ConnectionRegistry();
    const live = new Map<string, ReturnType<typeof connection>>();
    let next = 0;
    let seed = 7;
    const random = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n);
    const rooms = ['/ws/rooms/a', '/ws/rooms/b', '/ws/rooms/c'];
    for (let step = 0; step < 2000; step++) {
      if (live.size > 0 && random(3) === 0) {
        const ids = [...live.keys()];
        const id = ids[random(ids.length)]!;
        expect(registry.unregister(id)).toBe(true);
        live.delete(id);
      } else {
        // Another channel with the same paths: its connections are not in this channel's rooms.
        const channel = random(5) === 0 ? '/ws/other/:room' : CHANNEL;
        const made = connection(`c${next++}`, rooms[random(rooms.length)]!, channel);
        registry.register(made);
        live.set(made.info.id, made);
      }
      if (step % 50 !== 0) continue;
      for (const each of live.values()) each.got.length = 0;
      const room = rooms[random(rooms.length)]!;
      const members = [...live.values()].filter((each) => each.channel === CHANNEL && each.info.path === room);
      expect(registry.broadcast(CHANNEL, step, { path: room })).toBe(members.length);
      expect([...live.values()].filter((each) => each.got.length > 0)).toEqual(members);
    }
  });

  it('takes any spelling of the room (percent-encoded, a trailing slash); a room emptied, or one no connection is in, gets nothing', () => {
    const registry = new ConnectionRegistry();
    const lobby = connection('l1', '/ws/rooms/lobby');
    const spelt = connection('l2', '/ws/rooms/lobb%79/');
    const kitchen = connection('k1', '/ws/rooms/kitchen');
    for (const each of [lobby, spelt, kitchen]) registry.register(each);
    expect(registry.broadcast(CHANNEL, 1, { path: '/ws/rooms/lobby/' })).toBe(2);
    expect(registry.broadcast(CHANNEL, 2, { path: '/ws/rooms/%6Cobby' })).toBe(2);
    expect([lobby.got, spelt.got, kitchen.got]).toEqual([[1, 2], [1, 2], []]);
    registry.unregister('k1');
    expect(registry.broadcast(CHANNEL, 3, { path: '/ws/rooms/kitchen' })).toBe(0);
    expect(registry.broadcast(CHANNEL, 4, { path: '/ws/rooms/nobody' })).toBe(0);
    // Registered again, the same id in another room is in that room only.
    registry.unregister('l1');
    registry.register(connection('l1', '/ws/rooms/kitchen'));
    expect(registry.broadcast(CHANNEL, 5, { path: '/ws/rooms/lobby' })).toBe(1);
    expect(registry.broadcast(CHANNEL, 6, { path: '/ws/rooms/kitchen' })).toBe(1);
    expect(registry.broadcast(CHANNEL, 7)).toBe(2);
    expect(registry.stats()).toMatchObject({ connections: 2, byChannel: { [CHANNEL]: 2 } });
  });
});
