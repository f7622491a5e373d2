import { validationError } from '../validation.js';
import { describeThrown } from '../wire-value.js';
import { didYouMean, firstUnknownKey } from './nearest-name.js';

const SOURCE_KEYS = ['root', 'manifest'];

/**
 * A `{ root, manifest }` source's two fields, each read once: a key it does not take (`watch`,
 * `manifests`) is a ValidationError naming it, as is a field whose getter throws.
 */
export function readSource(given: { root: string; manifest: unknown }): { root: string; manifest: unknown } {
  if (!given || typeof given !== 'object') return given;
  const unknown = firstUnknownKey(given, SOURCE_KEYS);
  if (unknown !== undefined) {
    throw validationError('A plugin given as { root, manifest } takes those two keys only', [{ path: unknown, message: `is not taken${didYouMean(unknown, SOURCE_KEYS)}` }]);
  }
  const read = (key: 'root' | 'manifest'): unknown => {
    try {
      return given[key];
    } catch (error) {
      throw validationError('A plugin given as { root, manifest } could not be read', [{ path: key, message: `its getter threw: ${error instanceof Error ? error.message : describeThrown(error, 'it')}` }]);
    }
  };
  return { root: read('root') as string, manifest: read('manifest') };
}
