/** C0 controls, DEL and C1 controls (ESC and CSI among them: what starts a terminal's escape sequences). */
const CONTROLS = /[\u0000-\u001f\u007f-\u009f]/g;
const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/**
 * A handler's text as the CLI shows it on a terminal: every control character written out
 * (`\n`, `\x1b` …), so that a log message cannot forge lines of its own or send escape sequences
 * (colours, cursor moves, OSC titles and links) to the user's terminal. With `keepNewlines`, line
 * breaks stay (an error message of several lines), every other control is still written out.
 */
export function printableText(text: string, { keepNewlines = false } = {}): string {
  return text.replace(CONTROLS, (c) => (keepNewlines && c === '\n' ? c : (NAMED[c] ?? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)));
}

/**
 * JSON whose strings carry no raw DEL or C1 control (JSON.stringify escapes C0 ones only): the
 * same JSON, each written as `\u00XX`, so that a terminal shown it runs no escape sequence.
 */
export function terminalSafeJson(json: string): string {
  return json.replace(/[\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
