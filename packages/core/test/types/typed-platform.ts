// A TypeScript plugin under `strict`: the services it uses are declared once, and `ctx.platform`
// is typed by that declaration (checked by types.test.ts with `tsc --noEmit`).
import { defineHandler, type BackendOptions, type HandlerContext } from '@kb-labs/plugin-execution-core';
import { z } from 'zod';

declare module '@kb-labs/plugin-execution-core' {
  interface PlatformServices {
    kv: { get(key: string): Promise<string | undefined> };
  }
}

export const run = defineHandler({
  input: z.object({ args: z.array(z.string()) }),
  async run(input, ctx) {
    const cached: string | undefined = await ctx.platform.kv.get('last-run');
    // @ts-expect-error a service the plugin did not declare
    await ctx.platform.mail.send('x');
    // @ts-expect-error a declared method takes what was declared
    await ctx.platform.kv.get(42);
    const first: string | undefined = input.args[0];
    return { first, cached, workspace: ctx.workspace?.dir };
  },
});

/** A plain function handler names its context type. */
export default async function plain(input: { n: number }, ctx: HandlerContext): Promise<number> {
  const value = await ctx.platform.kv.get(String(input.n));
  return value === undefined ? 0 : value.length;
}

/** A handler that names another platform type than the declared one (a shared helper's, a test double's): defineHandler takes it from `ctx`. */
interface BlobPlatform {
  blob: { put(name: string, bytes: Uint8Array): Promise<void> };
}

export const stored = defineHandler({
  async run(_input, ctx: HandlerContext<BlobPlatform>) {
    await ctx.platform.blob.put('a', new Uint8Array(1));
    // @ts-expect-error the platform named here is the one the handler gets
    await ctx.platform.kv.get('x');
    return 1;
  },
});

/** The host's side of the same declaration: its `platform` option is checked against it; a method may answer synchronously. */
const store = new Map<string, string>();
export const hostOptions: BackendOptions = { platform: { kv: { get: (key) => store.get(key) } } };
export const asyncHost: BackendOptions = { platform: { kv: { get: async (key: string) => store.get(key) }, mail: undefined } };
export const otherServices: BackendOptions = { platform: { mail: { send: (to: string) => to.length } } };
// @ts-expect-error the declared method takes a string
export const wrongParameter: BackendOptions = { platform: { kv: { get: (key: number) => String(key) } } };
// @ts-expect-error the declared method answers a string or undefined
export const wrongAnswer: BackendOptions = { platform: { kv: { get: async (key: string) => key.length } } };
// @ts-expect-error a declared service is an object of methods
export const notAService: BackendOptions = { platform: { kv: 'store' } };

/** A host whose platform object is typed by an interface of its own (no index signature): taken, and still checked against the declaration. */
interface AppPlatform {
  kv: { get(key: string): Promise<string | undefined> };
  mail: { send(to: string): Promise<void> };
}
declare const appPlatform: AppPlatform;
export const interfaceHost: BackendOptions = { platform: appPlatform };
interface MisdeclaredPlatform {
  kv: { get(key: number): Promise<string> };
}
declare const misdeclared: MisdeclaredPlatform;
// @ts-expect-error an interface-typed platform is checked against the declared services too
export const wrongInterface: BackendOptions = { platform: misdeclared };
