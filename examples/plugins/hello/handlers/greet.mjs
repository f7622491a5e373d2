import { defineHandler } from '@kb-labs/plugin-execution-core';
import { z } from 'zod';

export default defineHandler({
  input: z.object({ name: z.string().min(1), excited: z.boolean().default(false) }),
  async run(input, ctx) {
    ctx.logger.info('greeting', { name: input.name });
    return { message: `Hello, ${input.name}${input.excited ? '!' : '.'}`, tenant: ctx.context.tenantId ?? null };
  },
});
