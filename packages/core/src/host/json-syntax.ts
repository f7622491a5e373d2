/**
 * What is wrong with a JSON text that `JSON.parse` refused, said for a person with an editor:
 * the line and column (Node 20 gives only a character position), and the usual cause when it is
 * one of JSON's differences from JavaScript (a trailing comma, a comment). The text itself is not
 * quoted: V8 quotes a piece of it, which for a file reached through a link could be anything.
 */
export function jsonSyntaxProblem(text: string, error: unknown, objectOf = 'a manifest'): string {
  const message = String((error as Error)?.message ?? error);
  if (text.trim() === '') return 'it is empty';
  const token = /^Unexpected token '(.{1,2})', /su.exec(message);
  if (token) {
    // `objectOf`: what the text should be a JSON object for ('' when any JSON value will do).
    const notObject = !objectOf || text.trimStart().startsWith('{') ? '' : ` (${objectOf} is one JSON object, starting with "{")`;
    const position = tokenPosition(text);
    const where = position === undefined ? '' : ` at ${lineAndColumn(text, position)}${likelyCause(text, position)}`;
    return `unexpected ${describeCharacter(token[1]!)}${where}${notObject}`;
  }
  const at = / (?:in|after) JSON at position (\d+)/.exec(message);
  if (!at) return message.replace(/ \(line \d+ column \d+\)$/, '');
  const position = Number(at[1]);
  const what = message.slice(0, at.index).replace(/ after$/, '');
  return `${what} at ${lineAndColumn(text, position)}${likelyCause(text, position)}`;
}

/** Texts longer than this are not searched for where an unexpected token is (see tokenPosition). */
const SEARCHED_CHARACTERS = 1024 * 1024;

/**
 * Where JSON.parse met the unexpected token it does not place: the shortest start of `text` that
 * fails for a reason other than ending early, less one (a binary search: a start that holds the
 * mistake always fails on it). Undefined for a text too long to search.
 */
function tokenPosition(text: string): number | undefined {
  if (text.length > SEARCHED_CHARACTERS) return undefined;
  const failsInside = (length: number): boolean => {
    try {
      JSON.parse(text.slice(0, length));
      return false;
    } catch (error) {
      const message = String((error as Error)?.message);
      if (message.startsWith('Unexpected token')) return true;
      const at = / at position (\d+)/.exec(message);
      return at !== null && Number(at[1]) < length;
    }
  };
  let low = 1;
  let high = text.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (failsInside(middle)) high = middle;
    else low = middle + 1;
  }
  return low - 1;
}

function lineAndColumn(text: string, position: number): string {
  const before = text.slice(0, position);
  const line = before.split('\n').length;
  return `line ${line}, column ${position - before.lastIndexOf('\n')}`;
}

function likelyCause(text: string, position: number): string {
  const here = text[position];
  if (here === '/') return ' (a comment: JSON has none)';
  if (here === "'") return ' (JSON strings take double quotes)';
  if ((here === '}' || here === ']') && text.slice(0, position).trimEnd().endsWith(',')) return ' (a trailing comma: JSON allows none)';
  return '';
}

/** Punctuation is named; a letter or digit is not (it would quote the file, which may be anything a link leads to). */
function describeCharacter(character: string): string {
  return /^[\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e]$/.test(character) ? `character '${character}'` : 'text';
}
