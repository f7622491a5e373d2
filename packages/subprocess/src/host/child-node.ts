import { spawnSync } from 'node:child_process';
import { ValidationError } from '@kb-labs/plugin-execution-core';

/**
 * What the Node that runs the children is and accepts: the host's own, or, where `execPath`
 * names another Node, that one's, asked once. The children's flags (the permission model's
 * spelling, `--no-experimental-sqlite`, `--allow-net` …) are chosen from it: chosen from the
 * host's, a Node 22 child of a Node 20 host kept node:sqlite (which writes files the model does
 * not check), and a Node 20 child of a Node 22 host refused `--permission` at every start.
 */
export interface ChildNode {
  /** Its `process.version`. */
  version: string;
  /** Its `process.allowedNodeEnvironmentFlags`. */
  flags: ReadonlySet<string>;
}

const asked = new Map<string, ChildNode>();

/** The Node at `execPath` (the host's own when it is process.execPath); VALIDATION_ERROR naming execPath if it cannot say. */
export function childNode(execPath: string): ChildNode {
  if (execPath === process.execPath) return { version: process.version, flags: process.allowedNodeEnvironmentFlags };
  let node = asked.get(execPath);
  if (!node) asked.set(execPath, (node = askNode(execPath)));
  return node;
}

function askNode(execPath: string): ChildNode {
  const script = 'process.stdout.write(JSON.stringify({ version: process.version, flags: [...process.allowedNodeEnvironmentFlags] }))';
  // An explicit environment: no NODE_OPTIONS of the host's, nor its extra CA certificates (each costs the start).
  const run = spawnSync(execPath, ['-e', script], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
  try {
    if (run.error) throw run.error;
    const said = JSON.parse(run.stdout) as { version?: unknown; flags?: unknown };
    if (typeof said.version !== 'string' || !Array.isArray(said.flags)) throw new Error('it printed something else than asked');
    return { version: said.version, flags: new Set(said.flags.filter((flag): flag is string => typeof flag === 'string')) };
  } catch (error) {
    const silent = !run.error && !run.stdout && !run.stderr?.trim() ? `it exited with code ${run.status ?? run.signal} without a word` : undefined;
    const why = silent ?? (run.stderr?.trim().split('\n')[0] || (error as Error).message);
    throw new ValidationError(`execPath ${execPath} did not say which Node it is and which flags it takes (${why}): execPath must be a Node binary`, {
      details: { path: 'execPath', execPath },
      cause: error,
    });
  }
}
