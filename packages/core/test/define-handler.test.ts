import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { isDefinedHandler } from '../src/define-handler.js';
import { defineHandler } from '../src/index.js';

describe('defineHandler', () => {
  it('takes a run function, with or without an input schema', () => {
    const run = async () => 1;
    expect(defineHandler({ run }).run).toBe(run);
    expect(defineHandler({ input: z.object({ n: z.number() }), run }).input).toBeDefined();
    // Any Standard Schema.
    expect(defineHandler({ input: { '~standard': { version: 1, vendor: 'x', validate: (value: unknown) => ({ value }) } } as never, run })).toBeDefined();
  });

  it.each([
    [async () => 1, 'a function'],
    [{ handler() {} }, 'an object with handler'],
    [undefined, 'undefined'],
  ])('refuses %s where a definition belongs, naming what it was given', (given, said) => {
    expect(() => defineHandler(given as never)).toThrow(new TypeError(`defineHandler() needs an object with a run(input, ctx) function, and was given ${said}`));
  });

  it.each([
    [{ args: 'string[]' }, 'an object with args'],
    [z.string, 'a function (string)'],
    ['string', 'the string "string"'],
  ])('refuses an input that is not a schema (%s) where the module calls it', (input, said) => {
    expect(() => defineHandler({ input: input as never, run: () => 1 })).toThrow(new TypeError(`defineHandler(): "input" must be a schema (a zod schema, or one with ~standard.validate), and is ${said}`));
  });

  it.each(['inputSchema', 'schema', 'inputs'])('refuses a schema named %s, which would be ignored and leave the input unchecked', (name) => {
    const definition = { [name]: z.object({ n: z.number() }), run: () => 1 };
    expect(() => defineHandler(definition as never)).toThrow(
      new TypeError(`defineHandler(): "${name}" holds a schema, which nothing uses: only the one named "input" validates the input (defineHandler({ input, run }))`),
    );
    // Beside an input, another schema is the plugin's own business.
    expect(defineHandler({ input: z.object({ n: z.number() }), output: z.number(), run: () => 1 } as never)).toBeDefined();
  });

  it('says so when the module exported defineHandler itself and the runtime calls it as the handler', () => {
    const ctx = { executionId: 'e-1', logger: {} };
    expect(() => (defineHandler as (input: unknown, ctx: unknown) => unknown)({ any: 1 }, ctx)).toThrow(/^The module exports defineHandler itself, not a handler made with it/);
  });
  it('takes a Standard Schema that is a function (an ArkType type is callable)', () => {
    const callable = Object.assign((value: unknown) => value, { '~standard': { version: 1, vendor: 'x', validate: (value: unknown) => ({ value }) } });
    expect(defineHandler({ input: callable as never, run: () => 1 }).input).toBe(callable);
  });

  it('gives back a frozen definition, which stays a handler beside helper functions of its own', () => {
    const defined = defineHandler({ run: () => 1, describe: () => 'helper' } as never);
    expect(Object.isFrozen(defined)).toBe(true);
    // The brand says it is one handler; a plain object of two functions is a module's exports.
    expect(isDefinedHandler(defined)).toBe(true);
    expect(isDefinedHandler({ run: () => 1, describe: () => 'helper' })).toBe(false);
  });

  it('is not mistaken for the runtime calling it when its second argument has an executionId but no logger', () => {
    const run = () => 1;
    expect((defineHandler as (definition: unknown, ctx: unknown) => { run: unknown })({ run }, { executionId: 'e-1' }).run).toBe(run);
  });
});
