/** Emits progress events while it works; honours cancellation. */
export default async function progress(input, ctx) {
  const steps = input?.steps ?? 5;
  for (let step = 1; step <= steps; step++) {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    await new Promise((resolve) => setTimeout(resolve, 5));
    ctx.emit({ type: 'progress', percent: Math.round((step / steps) * 100) });
  }
  return { steps };
}
