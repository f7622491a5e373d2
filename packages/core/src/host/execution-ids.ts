import { ValidationError } from '../errors.js';
import type { LiveMap } from './live-list.js';

/**
 * Claims a caller's `id` for one execution: refused while an execution not finished has it (its
 * workspace, its logs, its spans). Returns what frees it, once: freed as the result goes, the
 * execution's later release (a workspace still being removed in the background) does not free
 * it again from the next execution given it (a retry under a job's own id).
 */
export function claimExecutionId(inUse: LiveMap<true>, id: string): () => void {
  if (inUse.has(id)) {
    throw new ValidationError(`executionId "${id}" belongs to an execution of this backend that has not finished; give each execution its own id`, {
      details: { path: 'executionId', reason: 'duplicate' },
    });
  }
  inUse.set(id, true);
  let freed = false;
  return () => {
    if (freed) return;
    freed = true;
    inUse.delete(id);
  };
}
