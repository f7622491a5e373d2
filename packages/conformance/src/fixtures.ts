import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

/** Absolute folders of the fixture plugins, for `plugins: [...]`. */
export const fixturePlugins = {
  basic: path.resolve(here, '../fixtures/plugins/basic'),
  hostile: path.resolve(here, '../fixtures/plugins/hostile'),
  guarded: path.resolve(here, '../fixtures/plugins/guarded'),
  cjs: path.resolve(here, '../fixtures/plugins/cjs'),
  /** The fuzz driver's plugin (src/fuzz): one handler whose input says what it does. */
  fuzz: path.resolve(here, '../fixtures/plugins/fuzz'),
  /** Not loaded by the suite's backends: the reload tests copy it and edit the copy. */
  reloadable: path.resolve(here, '../fixtures/plugins/reloadable'),
} as const;

export const BASIC = '@conformance/basic';
export const HOSTILE = '@conformance/hostile';
export const GUARDED = '@conformance/guarded';
export const CJS = '@conformance/cjs';
export const RELOADABLE = '@conformance/reloadable';
