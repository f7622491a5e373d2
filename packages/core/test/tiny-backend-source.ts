/**
 * The source text of the smallest backend on core's backend kit (in-process, one at a time), for
 * the child programs tests write and run as hosts of their own; it needs `kit` in scope (the
 * backend kit, imported or required under that name).
 */
export const TINY_BACKEND_SOURCE = `class TinyBackend extends kit.BaseBackend {
  constructor(options) { super('tiny', options, { concurrency: 1 }); }
  dispatch(task, control) {
    return kit.runHandler(task, { signal: new AbortController().signal, platform: {}, log: (level, message, fields) => control.log(level, message, fields), emit: () => {} });
  }
  async closeRunners() {}
  isolation() { return { requested: 'none', active: 'none', layers: [], reason: 'test' }; }
}`;
