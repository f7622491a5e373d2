// What a subprocess backend keeps once it is shut down: nothing (its first child's execution was
// kept for the life of the process by the process-wide exit hook, platform services and all).
import v8 from 'node:v8';
import vm from 'node:vm';
import { BASIC, expectOk, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { SubprocessBackend } from '@kb-labs/plugin-execution-subprocess';
import { expect, it } from 'vitest';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

it("a backend shut down is let go whole, its platform services too, though it ran this process's first child", async () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const refs: Array<WeakRef<object>> = [];
  // In a function of its own: a suspended test's frame would keep its last backend.
  const runOne = async (n: number) => {
    const platform = { kv: { get: async () => 'v' } };
    refs.push(new WeakRef(platform));
    const backend = new SubprocessBackend({ plugins: [fixturePlugins.basic], workspace: false, platform });
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: n }));
    await backend.shutdown();
  };
  await runOne(0);
  await runOne(1);
  // A killed group's follow-up check holds its child for two seconds.
  await sleep(2500);
  gc();
  await sleep(10);
  gc();
  expect(refs.map((ref) => ref.deref() === undefined)).toEqual([true, true]);
}, 30_000);
