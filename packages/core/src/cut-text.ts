/**
 * `text` cut to its first `most` characters, saying how many more it had (`… [N more
 * characters]`, the words a long log message is cut with on every backend); as it is when shorter.
 */
export function cutText(text: string, most: number): string {
  return text.length > most ? `${text.slice(0, most)}… [${text.length - most} more characters]` : text;
}
