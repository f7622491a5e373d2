import { once } from 'node:events';
import { mkdir, mkdtemp, realpath, rm, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hiddenPackageNote, linksOutOf, warnOfHiddenDependencies } from '../src/host/hidden-dependencies.js';

let scratch: string;
let outside: string;

async function folder(...parts: string[]): Promise<string> {
  const dir = path.join(...parts);
  await mkdir(dir, { recursive: true });
  return dir;
}

describe('hidden dependencies of a sandboxed plugin', () => {
  beforeAll(async () => {
    scratch = await realpath(await mkdtemp(path.join(os.tmpdir(), 'kb-hidden-deps-')));
    outside = await folder(scratch, 'outside');
  });
  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  it('lists links leading outside the plugin folder, in @scope folders too, and not those inside it or real folders', async () => {
    const plugin = await folder(scratch, 'listed');
    const modules = await folder(plugin, 'node_modules');
    await symlink(await folder(outside, 'out'), path.join(modules, 'out'));
    await symlink(await folder(plugin, 'vendor', 'in'), path.join(modules, 'in'));
    await folder(modules, 'real');
    await symlink(await folder(outside, 'scoped'), path.join(await folder(modules, '@scope'), 'scoped'));
    const found = linksOutOf(plugin).sort((a, b) => a.at.localeCompare(b.at));
    expect(found).toEqual([
      { at: path.join('node_modules', '@scope', 'scoped'), to: path.join(outside, 'scoped') },
      { at: path.join('node_modules', 'out'), to: path.join(outside, 'out') },
    ]);
  });

  it('names five links in its warning and counts the rest', async () => {
    const plugin = await folder(scratch, 'many');
    const modules = await folder(plugin, 'node_modules');
    for (let i = 0; i < 7; i++) await symlink(await folder(outside, `many-${i}`), path.join(modules, `dep-${i}`));
    const warned = once(process, 'warning') as Promise<[Error & { code?: string }]>;
    warnOfHiddenDependencies(plugin);
    const [warning] = await warned;
    expect(warning.code).toBe('KB_PLUGIN_SANDBOX_HIDDEN_DEPENDENCIES');
    expect(warning.message.match(/ -> /g)).toHaveLength(5);
    expect(warning.message).toContain(' and 2 more lead(s) outside the plugin folder');
  });

  it('blames a link above the plugin for a missing package, unless the sandbox shows where it leads or a real folder comes first', async () => {
    const project = await folder(scratch, 'project');
    const target = await folder(outside, 'dep');
    await symlink(target, path.join(await folder(project, 'node_modules'), 'dep'));
    const plugin = await folder(project, 'plugin');
    const message = "Cannot find package 'dep' imported from /plugin/handler.mjs";
    expect(hiddenPackageNote(plugin, message, [])).toContain(`is a link to ${target}, which the bubblewrap sandbox does not show`);
    expect(hiddenPackageNote(plugin, message, [outside])).toBeUndefined();
    expect(hiddenPackageNote(plugin, message, [`${outside}${path.sep}*`])).toBeUndefined();
    const installed = await folder(project, 'installed');
    await folder(installed, 'node_modules', 'dep');
    expect(hiddenPackageNote(installed, message, [])).toBeUndefined();
  });
});
