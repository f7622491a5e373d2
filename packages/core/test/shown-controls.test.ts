import { describe, expect, it } from 'vitest';
import { shownControls } from '../src/shown-controls.js';

describe('shownControls: a plugin\'s text in a message a host prints', () => {
  it('writes out terminal escapes, C1 controls and DEL, keeping line breaks and tabs', () => {
    expect(shownControls('a\x1b[31mred\x1b[0m\u009b2J\x7f\r\nnext\tcol\x07')).toBe('a\\x1b[31mred\\x1b[0m\\x9b2J\\x7f\\r\nnext\tcol\\x07');
  });

  it('writes out every character that shows a line in another order or breaks it unseen', () => {
    const tricks = '\u061c\u200e\u200f\u2028\u2029\u202a\u202e\u2066\u2069';
    expect(shownControls(`x${tricks}y`)).toBe('x\\u061c\\u200e\\u200f\\u2028\\u2029\\u202a\\u202e\\u2066\\u2069y');
  });

  it('writes out the kept characters too when told to keep none, and leaves other text alone', () => {
    expect(shownControls('one\ntwo\tthree', '')).toBe('one\\ntwo\\tthree');
    expect(shownControls('héllo → 世界 🙂')).toBe('héllo → 世界 🙂');
  });
});
