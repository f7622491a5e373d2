/**
 * Logs, asks the host for a quote (a platform call: a child span of the execution on the host),
 * and shows the traceparent it would send on an outbound request so the callee joins the trace.
 */
export default async function quote(input, ctx) {
  ctx.logger.info('picking a quote', { topic: input?.topic });
  const text = await ctx.platform.quotes.pick(input?.topic ?? 'any');
  const outbound = { headers: { traceparent: ctx.traceparent } };
  return { text, outbound };
}
