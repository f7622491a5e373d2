/**
 * Past the C0 controls: DEL and C1 controls (CSI among them: what starts a terminal's escape
 * sequences, as ESC does), the Unicode line and paragraph separators, and the bidirectional
 * controls (which make text show in another order than it is: a "Trojan Source" line).
 */
const BEYOND_C0 = '\\u007f-\\u009f\\u061c\\u200e\\u200f\\u2028-\\u202e\\u2066-\\u2069';
/** Those and the C0 controls (ESC, line breaks, tabs …). */
const CONTROLS = new RegExp(`[\\u0000-\\u001f${BEYOND_C0}]`, 'g');
/** What JSON.stringify leaves raw of them (it escapes the C0 controls itself). */
const RAW_IN_JSON = new RegExp(`[${BEYOND_C0}]`, 'g');
const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/**
 * A handler's text as the CLI shows it on a terminal: every control character written out
 * (`\n`, `\x1b` …), so that a log message cannot forge lines of its own or send escape sequences
 * (colours, cursor moves, OSC titles and links) to the user's terminal. With `keepNewlines`, line
 * breaks stay (an error message of several lines), every other control is still written out.
 */
export function printableText(text: string, { keepNewlines = false } = {}): string {
  return text.replace(CONTROLS, (c) => (keepNewlines && c === '\n' ? c : (NAMED[c] ?? escaped(c))));
}

function escaped(c: string): string {
  const code = c.charCodeAt(0);
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/**
 * JSON whose strings carry no raw DEL, C1 or bidirectional control (JSON.stringify escapes C0 ones
 * only): the same JSON, each written as `\uXXXX`, so that a terminal shown it runs no escape
 * sequence and shows the text in its own order.
 */
export function terminalSafeJson(json: string): string {
  return json.replace(RAW_IN_JSON, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
