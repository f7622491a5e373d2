// The host's `platform` option is checked against the services declared for plugins (the same
// declaration the README shows for `ctx.platform`); a method may answer synchronously. Its
// declaration would reach every file of a program, the package's own tests' test doubles too, so
// the package's tsconfig leaves it to types.test.ts (this folder's tsconfig).
import { createExecutionBackend, startExecutionWorker } from '@kb-labs/plugin-execution';

declare module '@kb-labs/plugin-execution' {
  interface PlatformServices {
    kv: { get(key: string): Promise<string | undefined> };
  }
}

const store = new Map<string, string>();
createExecutionBackend({ type: 'worker-pool', platform: { kv: { get: (key) => store.get(key) } } });
createExecutionBackend({ type: 'subprocess', platform: { kv: { get: async (key: string) => store.get(key) }, mail: { send: () => true } } });
void startExecutionWorker({ plugins: ['./plugins/a'], platform: { kv: { get: (key) => store.get(key) } } });

// @ts-expect-error the declared method takes a string
createExecutionBackend({ type: 'in-process', platform: { kv: { get: (key: number) => String(key) } } });
// @ts-expect-error the declared method answers a string or undefined
createExecutionBackend({ platform: { kv: { get: async () => 42 } } });
// @ts-expect-error a worker's own services are checked the same way
void startExecutionWorker({ plugins: ['./plugins/a'], platform: { kv: { get: (key: string) => key.length } } });

// One execution's own services (ExecuteOptions.platform) are checked the same way.
const backend = createExecutionBackend({ type: 'in-process' });
void backend.execute({ pluginId: 'p', handlerId: 'h' }, { platform: { kv: { get: (key) => store.get(key) }, mail: { send: () => true } } });
// @ts-expect-error an execution's own services are checked against the declaration too
void backend.execute({ pluginId: 'p', handlerId: 'h' }, { platform: { kv: { get: (key: number) => String(key) } } });
