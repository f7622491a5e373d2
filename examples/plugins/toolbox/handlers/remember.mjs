/** Stores and reads back a value through the host's kv service (ctx.platform, permission-checked). */
export default async function remember(input, ctx) {
  await ctx.platform.kv.set(input.key, input.value);
  return { stored: await ctx.platform.kv.get(input.key) };
}
