import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WorkerPoolBackend } from '@kb-labs/plugin-execution-worker-pool';
import { Piscina } from 'piscina';
const here = path.dirname(fileURLToPath(import.meta.url));
const input = { args: ['--verbose'], n: 1 };
const echo = { pluginId: '@bench/worker-pool', handlerId: 'echo', input };
const which = process.argv[2];
const ours = which === 'ours' ? new WorkerPoolBackend({ plugins: [path.join(here, 'plugin')], workspace: false, maxThreads: 2, minThreads: 2 }) : undefined;
const piscina = which === 'piscina' ? new Piscina({ filename: new URL('./raw/piscina-echo.mjs', import.meta.url).href, minThreads: 2, maxThreads: 2 }) : undefined;
const fn = ours ? async () => { const r = await ours.execute(echo); if (!r.ok) throw r.error; } : () => piscina.run(input);
async function tp(total) {
  let started = 0; const t = performance.now();
  await Promise.all(Array.from({ length: 64 }, async () => { while (started < total) { started++; await fn(); } }));
  return total / (performance.now() - t) * 1000;
}
await tp(20000);
const rates = [];
for (let i = 0; i < 5; i++) rates.push(await tp(20000));
console.log(which, rates.map((r) => r.toFixed(0)).join(' '));
await (ours ? ours.shutdown() : piscina.destroy());
