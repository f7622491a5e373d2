/**
 * Past the C0 controls: DEL and C1 controls (CSI among them: what starts a terminal's escape
 * sequences, as ESC does), the Arabic letter mark, the left-to-right and right-to-left marks, the
 * Unicode line and paragraph separators, and the bidirectional controls (which make text show in
 * another order than it is: a "Trojan Source" line).
 */
export const CONTROLS_BEYOND_C0 = '\\u007f-\\u009f\\u061c\\u200e\\u200f\\u2028-\\u202e\\u2066-\\u2069';
/** Those and the C0 controls (ESC, line breaks, tabs …). */
const CONTROLS = new RegExp(`[\\u0000-\\u001f${CONTROLS_BEYOND_C0}]`, 'g');
const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/**
 * `text` with its control characters written as escapes (`\r`, `\x1b`, `\u202e`) but those in
 * `kept` (by default line breaks and tabs): a plugin's bytes in a message a host logs or prints,
 * its terminal escape sequences shown, not sent, and no line of it shown in another order than it
 * is. Details keep them as they came.
 */
export function shownControls(text: string, kept = '\n\t'): string {
  return text.replace(CONTROLS, (c) => (kept.includes(c) ? c : writtenOut(c)));
}

function writtenOut(c: string): string {
  const code = c.charCodeAt(0);
  return NAMED[c] ?? (code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`);
}
