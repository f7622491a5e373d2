import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
const plugins = [process.env.BASIC];
const backend = new InProcessBackend({ plugins, workspace: false });
const req = { pluginId: '@conformance/basic', handlerId: 'echo', input: 1 };
for (let i = 0; i < 20000; i++) await backend.execute(req);
const N = +process.env.N || 200000;
const t = performance.now();
const inflight = 64;
let done = 0;
async function lane() { while (done < N) { done++; const r = await backend.execute(req); if (!r.ok) throw new Error(r.error.message); } }
await Promise.all(Array.from({ length: inflight }, lane));
const ms = performance.now() - t;
console.log(`${(N / ms * 1000).toFixed(0)} exec/s, ${(ms * 1000 / N).toFixed(2)} µs each`);
await backend.shutdown();
