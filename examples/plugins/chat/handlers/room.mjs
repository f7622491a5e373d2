// One handler serves the whole connection lifecycle: input.event is 'connect', 'message' or
// 'disconnect'. It keeps no state of its own, so it behaves the same on every backend (a worker
// thread or child process does not share memory with the host): who is who comes from the
// connection descriptor the host put in ctx.context. Rooms are the ":room" of the channel path;
// `scope: 'path'` keeps each broadcast inside its room.

/** The nickname the client chose with ?name=…, else a short form of its connection id. */
function nameOf(ctx) {
  const { query, id } = ctx.context.host.connection;
  const name = typeof query.name === 'string' ? query.name.trim().slice(0, 32) : '';
  return name || `guest-${id.slice(0, 4)}`;
}

export default async function room(input, ctx) {
  const me = nameOf(ctx);
  const roomName = ctx.context.host.connection.params.room;

  switch (input.event) {
    case 'connect': {
      if (me.toLowerCase() === 'admin') return { accept: false, reason: 'that name is reserved' };
      await ctx.channel.send({ kind: 'welcome', room: roomName, you: me, connectionId: input.connectionId });
      await ctx.channel.broadcast({ kind: 'joined', room: roomName, who: me, connectionId: input.connectionId }, { exclude: [input.connectionId], scope: 'path' });
      return undefined;
    }
    case 'message': {
      const { text, to } = input.data ?? {};
      if (typeof text !== 'string' || text.length === 0) throw new Error('send { "data": { "text": "…" } }');
      if (to) {
        const delivered = await ctx.channel.sendTo(to, { kind: 'whisper', from: me, text });
        return { whispered: delivered };
      }
      const reached = await ctx.channel.broadcast({ kind: 'chat', from: me, text }, { exclude: [input.connectionId], scope: 'path' });
      return { delivered: reached };
    }
    case 'disconnect':
      await ctx.channel.broadcast({ kind: 'left', room: roomName, who: me }, { scope: 'path' });
      return undefined;
    default:
      return undefined;
  }
}
