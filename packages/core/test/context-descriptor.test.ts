import { describe, expect, it } from 'vitest';
import { ValidationError } from '../src/index.js';
import { checkContextDescriptor, contextDescriptorSchema } from '../src/host/context-descriptor.js';

describe('context descriptor bounds and the once-for-many check (a channel mount\'s static context)', () => {
  it('refuses a requestId or tenantId over 256 characters, naming it', () => {
    for (const field of ['requestId', 'tenantId']) {
      expect(contextDescriptorSchema().safeParse({ [field]: 'x'.repeat(256) }).success, field).toBe(true);
      const result = contextDescriptorSchema().safeParse({ [field]: 'x'.repeat(257) });
      expect(result.success, field).toBe(false);
      expect(result.error?.issues[0]?.path, field).toEqual([field]);
    }
  });

  it('refuses a value that cannot cross to a runner, naming where it is', () => {
    let error: unknown;
    try {
      checkContextDescriptor({ config: { hook: () => 1 } }, 'mount context');
    } catch (thrown) {
      error = thrown;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as Error).message).toContain('context.config.hook');
    expect(() => checkContextDescriptor({ tenantId: 't', config: { a: 1 } }, 'mount context')).not.toThrow();
  });
});
