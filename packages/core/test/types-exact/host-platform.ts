// A host under `exactOptionalPropertyTypes`: a declared service or method left `undefined` (one
// the host's configuration does not provide) is taken, as it is at run time, where a call of it
// fails INTERNAL_ERROR and health() names it (checked by types.test.ts with `tsc --noEmit`).
import type { BackendOptions } from '@kb-labs/plugin-execution-core';

declare module '@kb-labs/plugin-execution-core' {
  interface PlatformServices {
    kv: { get(key: string): Promise<string | undefined>; set(key: string, value: string): Promise<void> };
  }
}

declare const kvUrl: string | undefined;
const store = new Map<string, string>();
const kv = { get: (key: string) => store.get(key), set: (key: string, value: string) => void store.set(key, value) };
export const maybeService: BackendOptions = { platform: { kv: kvUrl === undefined ? undefined : kv } };
export const maybeMethod: BackendOptions = { platform: { kv: { get: kv.get, set: kvUrl === undefined ? undefined : kv.set } } };
// @ts-expect-error a declared method is still checked
export const wrongMethod: BackendOptions = { platform: { kv: { get: (key: number) => String(key) } } };
