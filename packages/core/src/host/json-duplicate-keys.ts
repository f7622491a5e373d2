/** An object or array being read, with what it needs to name the path of a key said twice in it. */
interface Frame {
  path: string;
  /** Keys of an object so far; undefined in an array. */
  keys: Set<string> | undefined;
  /** The next key of an object (read, its value not yet), or the next index of an array. */
  next: string | number;
}

/**
 * The paths (as `handlers.run`) of keys given twice in one object of `text`, which must be valid
 * JSON: `JSON.parse` keeps the last silently, so a manifest with two handlers of one name would
 * lose the first without a word.
 */
export function duplicateJsonKeys(text: string): string[] {
  const found: string[] = [];
  const stack: Frame[] = [];
  const childPath = (frame: Frame | undefined) => (frame === undefined ? '' : joinPath(frame.path, frame.next));
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '{' || c === '[') {
      stack.push({ path: childPath(stack.at(-1)), keys: c === '{' ? new Set() : undefined, next: c === '{' ? '' : 0 });
    } else if (c === '}' || c === ']') {
      stack.pop();
    } else if (c === '"') {
      const end = stringEnd(text, i);
      const frame = stack.at(-1);
      // A key is a string followed by ':'; any other string is a value.
      if (frame?.keys && text.slice(end + 1).trimStart().startsWith(':')) {
        const key = JSON.parse(text.slice(i, end + 1)) as string;
        if (frame.keys.has(key)) found.push(joinPath(frame.path, key));
        frame.keys.add(key);
        frame.next = key;
      }
      i = end;
    } else if (c === ',') {
      // The next value of an array has the next index (in an object, the next key names it).
      const frame = stack.at(-1);
      if (frame && !frame.keys) frame.next = (frame.next as number) + 1;
    }
  }
  return [...new Set(found)];
}

/** The index of the quote that closes the string opened at `start`. */
function stringEnd(text: string, start: number): number {
  for (let i = start + 1; i < text.length; i++) {
    if (text[i] === '\\') i++;
    else if (text[i] === '"') return i;
  }
  return text.length;
}

function joinPath(parent: string, key: string | number): string {
  if (typeof key === 'number') return `${parent}[${key}]`;
  return parent ? `${parent}.${key}` : key;
}
