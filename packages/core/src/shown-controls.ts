/**
 * `text` with control characters but line breaks and tabs (and bidirectional overrides) written
 * as escapes (`\x1b`, `\u202e`): a plugin's bytes in a message a host logs or prints, its
 * terminal escape sequences shown, not sent. Details keep them as they came.
 */
export function shownControls(text: string): string {
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16)}`;
  });
}
