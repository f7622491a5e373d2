import type { ExecutionMeta } from '../types.js';
import type { ExecutionRequest } from './request.js';
import { unsafeExecutionIdReason } from './workspace-manager.js';

/**
 * Refused before its request was read through (an input that cannot be sent, an unknown option):
 * `meta` still names what the caller named, where each is a usable name, so that the caller can
 * match the result with its own id.
 */
export function nameFromRequest(meta: ExecutionMeta, request: ExecutionRequest): void {
  try {
    const { pluginId, handlerId, executionId } = request as Partial<Record<'pluginId' | 'handlerId' | 'executionId', unknown>>;
    if (!meta.pluginId && typeof pluginId === 'string') meta.pluginId = pluginId.slice(0, 200);
    if (!meta.handlerId && typeof handlerId === 'string') meta.handlerId = handlerId.slice(0, 200);
    if (!meta.executionId && typeof executionId === 'string' && unsafeExecutionIdReason(executionId) === undefined) meta.executionId = executionId;
  } catch {
    // Not an object, or a getter that throws: the request's problem, already reported.
  }
}
