import { describe, expect, it } from 'vitest';
import { jsonSyntaxProblem } from '../src/host/json-syntax.js';

/** What jsonSyntaxProblem says of `text`, with the error JSON.parse gives for it on this Node. */
function problemOf(text: string, objectOf?: string): string {
  try {
    JSON.parse(text);
  } catch (error) {
    return objectOf === undefined ? jsonSyntaxProblem(text, error) : jsonSyntaxProblem(text, error, objectOf);
  }
  throw new Error(`${text} parsed`);
}

describe('jsonSyntaxProblem (a manifest or message that is not JSON, said for a person with an editor)', () => {
  it('says an empty or blank text is empty, not where JSON ends early', () => {
    expect(problemOf('  \n')).toBe('it is empty');
  });

  it('asks for an object only where one is wanted', () => {
    expect(problemOf('x')).toBe('unexpected text at line 1, column 1 (a manifest is one JSON object, starting with "{")');
    expect(problemOf('x', '')).toBe('unexpected text at line 1, column 1');
  });

  it('calls a "}" a trailing comma only after a comma', () => {
    expect(problemOf('{"a": 1,\n}')).toMatch(/ at line 2, column 1 \(a trailing comma: JSON allows none\)$/);
    expect(problemOf('{"a" }')).not.toContain('trailing comma');
    expect(problemOf('{"a" }')).toMatch(/ at line 1, column 6$/);
  });
});
