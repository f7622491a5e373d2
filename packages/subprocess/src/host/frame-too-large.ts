import { ValidationError } from '@kb-labs/plugin-execution-core';
import { FrameTooLargeError, encodeFrame } from '../framing.js';
import type { ChildRunMessage } from '../messages.js';

/**
 * The run frame over maxFrameBytes, named by what made it so: the context when the frame is over
 * the limit without the input too (its size then what the frame takes without the input), the input otherwise.
 */
export function frameTooLargeError(error: FrameTooLargeError, run: ChildRunMessage): ValidationError {
  let tooLarge: { path: 'input' | 'context'; bytes: number } = { path: 'input', bytes: error.bytes };
  try {
    encodeFrame({ ...run, task: { ...run.task, input: undefined } }, error.limit);
  } catch (withoutInput) {
    if (withoutInput instanceof FrameTooLargeError) tooLarge = { path: 'context', bytes: withoutInput.bytes };
  }
  return new ValidationError(`The ${tooLarge.path} is ${tooLarge.bytes} bytes encoded: it exceeds the frame limit of ${error.limit} bytes (maxFrameBytes)`, {
    details: { path: tooLarge.path, reason: 'too-large', bytes: tooLarge.bytes, limit: error.limit },
  });
}
