/** The process out of file descriptors (EMFILE, ENFILE), memory or processes (ENOMEM, EAGAIN): for now, not for good. */
const SHORTAGE_CODES = new Set(['EMFILE', 'ENFILE', 'ENOMEM', 'EAGAIN']);

/**
 * Whether `error` (or what caused it) is a passing shortage of the process, nothing of what was
 * being read or loaded: worth trying again later (a plugin's folder, a handler's module).
 */
export function passingShortage(error: unknown): boolean {
  let e = error as { code?: unknown; cause?: unknown } | null | undefined;
  for (let depth = 0; e && typeof e === 'object' && depth < 4; depth++, e = e.cause as typeof e) {
    if (typeof e.code === 'string' && SHORTAGE_CODES.has(e.code)) return true;
  }
  return false;
}
