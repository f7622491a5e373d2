import { ValidationError } from '../errors.js';

/** Refuse what cannot be a plugin id, given to `<action>Plugin()`: ValidationError naming `pluginId` and what was given. */
export function checkPluginIdArgument(pluginId: unknown, action: 'reload' | 'unregister'): asserts pluginId is string {
  if (typeof pluginId === 'string' && pluginId.length > 0) return;
  throw new ValidationError(`${action}Plugin() needs the id of a registered plugin (its manifest's "id"), got ${describeId(pluginId)}`, { details: { path: 'pluginId' } });
}

function describeId(value: unknown): string {
  if (value === '') return 'an empty string';
  if (value === null) return 'null';
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return `a ${typeof value} (${String(value)})`;
  if (typeof value !== 'object') return typeof value;
  try {
    // "[object URL]", "[object Array]", "[object String]": what kind of object, without calling its own methods.
    const kind = Object.prototype.toString.call(value).slice(8, -1);
    return kind === 'Object' ? 'an object' : `an object (${kind})`;
  } catch {
    return 'an object';
  }
}
