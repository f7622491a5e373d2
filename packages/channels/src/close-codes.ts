/** WebSocket close codes and reasons: which ones plugin code may choose, and what a failed connect closes with. */
import { ValidationError } from '@kb-labs/plugin-execution-core';

/** A close reason is at most 123 bytes of UTF-8 (RFC 6455 §5.5: 125-byte control payload, 2 for the code). */
export const MAX_CLOSE_REASON_BYTES = 123;

/** Close codes for a connect execution that failed; anything else is 1011 (internal error). */
const CONNECT_FAILURE_CLOSE_CODES: Partial<Record<string, number>> = {
  PERMISSION_DENIED: 1008, // policy violation
  QUEUE_FULL: 1013, // try again later
  SHUTTING_DOWN: 1001, // going away
};

export function closeCodeForConnectFailure(errorCode: string): number {
  return CONNECT_FAILURE_CLOSE_CODES[errorCode] ?? 1011;
}

/**
 * The close code ws sends a client for a protocol violation it reports as an 'error' (ws's
 * documented `WS_ERR_*` codes), or undefined for an error that is not one.
 */
export function closeCodeForProtocolError(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !code.startsWith('WS_ERR_')) return undefined;
  if (code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' || code === 'WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH') return 1009;
  if (code === 'WS_ERR_INVALID_UTF8') return 1007;
  if (code === 'WS_ERR_TOO_MANY_BUFFERED_PARTS') return 1008;
  return 1002;
}

/** The codes `ctx.channel.close()` accepts: the standard ones a server may send, and the application range. */
export function isAllowedCloseCode(code: unknown): code is number {
  return typeof code === 'number' && Number.isInteger(code) && (code === 1000 || code === 1001 || code === 1008 || code === 1011 || (code >= 3000 && code <= 4999));
}

/** `{ accept: false, reason?, code? }` from a connect handler; code limited to 1008 or 4000-4999. */
export function readDenial(data: unknown): { code: number; reason: string } | undefined {
  if (typeof data !== 'object' || data === null || (data as { accept?: unknown }).accept !== false) return undefined;
  const { reason, code } = data as { reason?: unknown; code?: unknown };
  const closeCode = typeof code === 'number' && Number.isInteger(code) && code >= 4000 && code <= 4999 ? code : 1008;
  return { code: closeCode, reason: typeof reason === 'string' ? truncateUtf8(reason, MAX_CLOSE_REASON_BYTES) : 'connection refused' };
}

function truncateUtf8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text) <= maxBytes) return text;
  let out = text.slice(0, maxBytes);
  while (Buffer.byteLength(out) > maxBytes) out = out.slice(0, -1);
  // Not half a surrogate pair (an emoji cut in two reads as U+FFFD).
  return /[\uD800-\uDBFF]$/.test(out) ? out.slice(0, -1) : out;
}

/** A close's code (1000 when left out) and reason ('' when left out), checked: `by` names the call in the error. */
export function readCloseArguments(by: string, rawCode: unknown, rawReason: unknown): { code: number; reason: string } {
  const code = rawCode ?? 1000;
  const reason = rawReason ?? '';
  if (!isAllowedCloseCode(code)) {
    throw new ValidationError(`${by}: code must be 1000, 1001, 1008, 1011 or 3000-4999, got ${typeof code === 'string' ? JSON.stringify(code) : String(code)}`);
  }
  if (typeof reason !== 'string' || Buffer.byteLength(reason) > MAX_CLOSE_REASON_BYTES) {
    throw new ValidationError(`${by}: reason must be a string of at most ${MAX_CLOSE_REASON_BYTES} bytes`);
  }
  return { code, reason };
}
