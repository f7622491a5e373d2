/**
 * What is wrong with a JSON text that `JSON.parse` refused, said for a person with an editor:
 * the line and column (Node 20 gives only a character position), and the usual cause when it is
 * one of JSON's differences from JavaScript (a trailing comma, a comment). The text itself is not
 * quoted: V8 quotes a piece of it, which for a file reached through a link could be anything.
 */
export function jsonSyntaxProblem(text: string, error: unknown): string {
  const message = String((error as Error)?.message ?? error);
  const token = /^Unexpected token '(.{1,2})', /su.exec(message);
  if (token) return `unexpected ${describeCharacter(token[1]!)}${text.trimStart().startsWith('{') ? '' : ' (a manifest is one JSON object, starting with "{")'}`;
  const at = / (?:in|after) JSON at position (\d+)/.exec(message);
  if (!at) return message.replace(/ \(line \d+ column \d+\)$/, '');
  const position = Number(at[1]);
  const what = message.slice(0, at.index).replace(/ after$/, '');
  return `${what} at ${lineAndColumn(text, position)}${likelyCause(text, position)}`;
}

function lineAndColumn(text: string, position: number): string {
  const before = text.slice(0, position);
  const line = before.split('\n').length;
  return `line ${line}, column ${position - before.lastIndexOf('\n')}`;
}

function likelyCause(text: string, position: number): string {
  const here = text[position];
  if (here === '/') return ' (a comment: JSON has none)';
  if ((here === '}' || here === ']') && text.slice(0, position).trimEnd().endsWith(',')) return ' (a trailing comma: JSON allows none)';
  return '';
}

function describeCharacter(character: string): string {
  return /^[\x21-\x7e]$/.test(character) ? `character '${character}'` : 'character';
}
