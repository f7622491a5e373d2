import type { LogEntry } from '@kb-labs/plugin-execution-core';
import { CONTROLS_BEYOND_C0, shownControls } from '@kb-labs/plugin-execution-core/backend-kit';
import { printableJson } from './printable-json.js';

/** What JSON.stringify leaves raw of the control characters (it escapes the C0 ones itself). */
const RAW_IN_JSON = new RegExp(`[${CONTROLS_BEYOND_C0}]`, 'g');

/**
 * A handler's text as the CLI shows it on a terminal: every control character written out
 * (`\n`, `\x1b` …), so that a log message cannot forge lines of its own or send escape sequences
 * (colours, cursor moves, OSC titles and links) to the user's terminal. With `keepNewlines`, line
 * breaks stay (an error message of several lines), every other control is still written out.
 */
export function printableText(text: string, { keepNewlines = false } = {}): string {
  return shownControls(text, keepNewlines ? '\n' : '');
}

/**
 * JSON whose strings carry no raw DEL, C1 or bidirectional control (JSON.stringify escapes C0 ones
 * only): the same JSON, each written as `\uXXXX`, so that a terminal shown it runs no escape
 * sequence and shows the text in its own order.
 */
export function terminalSafeJson(json: string): string {
  return json.replace(RAW_IN_JSON, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * A log entry as `--logs` prints it: where from, its level, its message, and what was logged with
 * it, on one line whatever the handler put in it (its control characters written out).
 */
export function logLine(entry: LogEntry): string {
  const fields = entry.fields && Object.keys(entry.fields).length > 0 ? ` ${printableJson(entry.fields)}` : '';
  return `${printableText(`[${entry.stream}:${entry.level}] ${entry.message}${fields}`)}\n`;
}
