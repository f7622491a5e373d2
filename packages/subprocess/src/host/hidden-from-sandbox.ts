import { oncePerFolder } from './runtime-paths.js';
import { underOwnMount } from './sandbox-view.js';

/** underOwnMount, once per folder: asked at every execution, of a workspace root and plugin folders that stay put. */
const ownMountOf = oncePerFolder(underOwnMount);

/**
 * A workspace root or plugin folder under /dev or /proc, which a sandboxed child sees as the
 * sandbox's own: its handlers could never run (they would fail as WORKER_CRASHED every time).
 */
export function hiddenFromSandbox(root: string | undefined, pluginRoot?: string): { message: string; path: string } | undefined {
  const rootUnder = root !== undefined ? ownMountOf(root) : undefined;
  if (root !== undefined && rootUnder) {
    const message = `The workspace root ${root} lies under ${rootUnder}, which the bubblewrap sandbox replaces with its own: no handler could see its workspace. Choose a root elsewhere (workspace: { root }), or use sandbox: 'off'`;
    return { message, path: 'workspace.root' };
  }
  const pluginUnder = pluginRoot !== undefined ? ownMountOf(pluginRoot) : undefined;
  if (pluginRoot !== undefined && pluginUnder) {
    return { message: `The plugin folder ${pluginRoot} lies under ${pluginUnder}, which the bubblewrap sandbox replaces with its own: its handlers cannot load there. Keep plugins elsewhere, or use sandbox: 'off'`, path: 'pluginRoot' };
  }
  return undefined;
}
