// WebSocket channel demo: an HTTP server on loopback serves the chat plugin's channel
// ("/chat/:room" under basePath "/ws") on the in-process backend; a few ws clients join, talk,
// whisper, get refused, and receive a push from the host; then everything shuts down.
// Run after building: `node examples/host/channel-demo.mjs` (the main demo also runs it).
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createExecutionBackend } from '@kb-labs/plugin-execution';
import { mountWebSocketChannels } from '@kb-labs/plugin-execution';

// The ws client comes from the channels package's own dependency: Node 20 has no WebSocket global.
const { WebSocket } = createRequire(fileURLToPath(new URL('../../packages/channels/package.json', import.meta.url)))('ws');

const here = path.dirname(fileURLToPath(import.meta.url));
const chatDir = path.resolve(here, '../plugins/chat');
const manifest = JSON.parse(await readFile(path.join(chatDir, 'kb.plugin.json'), 'utf8'));

const backend = createExecutionBackend({ type: 'in-process', plugins: [chatDir], workspace: false });
const server = http.createServer((_req, res) => res.writeHead(426).end('this server speaks WebSocket on /ws/chat/:room\n'));
// onError sees every failed execution (here: step 3's bad message); without it the first of each
// kind becomes a process warning, so a host that forgot the hook still hears of failures.
const onError = (error, info) => console.log(`  (onError: ${info.phase} on ${info.channel}: ${error.code})`);
const mount = mountWebSocketChannels(server, manifest, { backend, basePath: '/ws', onError });
server.listen(0, '127.0.0.1');
await once(server, 'listening');
const base = `ws://127.0.0.1:${server.address().port}/ws/chat`;
console.log(`channel ${mount.channels.map((c) => c.channel).join(', ')} listening on ${base.replace('/ws/chat', '')}`);

/** A ws client that prints every frame it receives and lets the script wait for a particular one. */
function client(name, room) {
  const ws = new WebSocket(`${base}/${room}?name=${encodeURIComponent(name)}`);
  const frames = [];
  const waiters = [];
  ws.on('message', (raw) => {
    const frame = JSON.parse(String(raw));
    console.log(`  [${name.padEnd(5)}] <- ${JSON.stringify(frame)}`);
    frames.push(frame);
    for (const w of [...waiters]) if (w.match(frame)) (waiters.splice(waiters.indexOf(w), 1), w.resolve(frame));
  });
  const closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: String(reason) })));
  const waitFor = (match) => {
    const seen = frames.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => waiters.push({ match, resolve }));
  };
  let nextId = 1;
  return {
    name,
    closed,
    waitFor,
    /** Send a message and wait for the reply (or error) frame answering it. */
    say(data) {
      const id = `${name}-${nextId++}`;
      console.log(`  [${name.padEnd(5)}] -> ${JSON.stringify({ id, data })}`);
      ws.send(JSON.stringify({ id, data }));
      return waitFor((f) => f.replyTo === id);
    },
    get id() {
      return frames.find((f) => f.type === 'ready')?.connectionId;
    },
    close: () => (ws.close(), closed),
  };
}

console.log('\n1. ann and bob join the lobby, eve joins the garden');
const ann = client('ann', 'lobby');
await ann.waitFor((f) => f.type === 'ready');
const bob = client('bob', 'lobby');
await bob.waitFor((f) => f.type === 'ready');
await ann.waitFor((f) => f.data?.kind === 'joined');
const eve = client('eve', 'garden');
await eve.waitFor((f) => f.type === 'ready');

console.log('\n2. ann talks to the lobby (eve, in another room, hears nothing); bob whispers back');
await ann.say({ text: 'hello lobby' });
await bob.waitFor((f) => f.data?.kind === 'chat');
await bob.say({ text: 'psst, ann', to: ann.id });
await ann.waitFor((f) => f.data?.kind === 'whisper');

console.log('\n3. a bad message gets an error frame; the connection stays open');
await ann.say({ nope: true });

console.log('\n4. the connect handler refuses a reserved name');
const admin = client('admin', 'lobby');
console.log(`  [admin] closed: ${JSON.stringify(await admin.closed)}`);

console.log('\n5. the host pushes to every room through the ConnectionRegistry');
const reached = mount.registry.broadcast('/ws/chat/:room', { kind: 'announcement', text: 'server restarts soon' });
console.log(`  (registry.broadcast reached ${reached} connections; stats ${JSON.stringify(mount.registry.stats().byChannel)})`);
await Promise.all([ann, bob, eve].map((c) => c.waitFor((f) => f.data?.kind === 'announcement')));

console.log('\n6. bob leaves; ann is told');
await bob.close();
await ann.waitFor((f) => f.data?.kind === 'left');

console.log('\n7. backend.shutdown() unmounts the channel: every client gets 1001');
const closing = Promise.all([ann.closed, eve.closed]);
await backend.shutdown();
const [annClosed, eveClosed] = await closing;
console.log(`  [ann  ] closed: ${JSON.stringify(annClosed)}`);
console.log(`  [eve  ] closed: ${JSON.stringify(eveClosed)}`);
const s = mount.stats();
console.log(`  mount stats: ${s.upgradesAccepted} upgrades, ${s.executions} executions (${s.failedExecutions} failed), ${s.denied} denied, ${s.connections} connections left`);
server.close();
await once(server, 'close');
