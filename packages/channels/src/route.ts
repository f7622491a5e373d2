/** URL path patterns of channels: literal segments and `:name` parameters (core's channelPathParts), matched segment by segment. */
import { channelPathParts, repeatedParam, type ChannelPathParts } from '@kb-labs/plugin-execution-core/host-kit';

export interface Route {
  /** The mounted pattern, e.g. "/ws/rooms/:room"; also the channel's name in the ConnectionRegistry. */
  readonly pattern: string;
  readonly segments: readonly Segment[];
  /** Conflict key: two patterns with the same shape would shadow each other. */
  readonly shape: string;
  readonly paramCount: number;
}

type Segment = ChannelPathParts['segments'][number];

const BASE_PATH = /^(\/[\w\-.~]+)*$/;

/** "" or "/a/b" with no trailing slash; throws a message for anything else. */
export function normaliseBasePath(basePath: string): string {
  const trimmed = basePath === '/' ? '' : basePath.replace(/\/+$/, '');
  if (!BASE_PATH.test(trimmed)) throw new Error(`basePath must be "" or a path like "/ws", got ${JSON.stringify(basePath)}`);
  return trimmed;
}

export function compileRoute(basePath: string, channelPath: string): Route {
  const joined = `${basePath}${channelPath === '/' ? '' : stripTrailingSlash(channelPath)}` || '/';
  const parts = channelPathParts(joined);
  if (repeatedParam(parts) !== undefined) throw new Error(`Channel path ${JSON.stringify(channelPath)} repeats a parameter name`);
  return { pattern: joined, segments: parts.segments, shape: parts.shape, paramCount: parts.params.length };
}

/**
 * Params of `pathname` if it matches, else undefined. Parameter values are percent-decoded;
 * literal segments are compared as sent, or, with `decodeLiterals`, percent-decoded too (to find
 * a spelling of a static path: UpgradeRouter refuses those).
 */
export function matchRoute(route: Route, pathname: string, decodeLiterals = false): Record<string, string> | undefined {
  const parts = splitPath(stripTrailingSlash(pathname));
  if (parts.length !== route.segments.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < parts.length; i++) {
    const segment = route.segments[i]!;
    const part = parts[i]!;
    if ('literal' in segment) {
      if (segment.literal !== part && !(decodeLiterals && part.includes('%') && decodeSegment(part) === segment.literal)) return undefined;
    } else {
      if (part.length === 0) return undefined;
      const value = decodeSegment(part);
      if (value === undefined) return undefined;
      // Defined, not assigned: a parameter named `__proto__` would otherwise set the object's prototype (or, for a string, do nothing).
      Object.defineProperty(params, segment.param, { value, enumerable: true, writable: true, configurable: true });
    }
  }
  return params;
}

/** Whether `pathname` lies at or under `basePath` ("" covers nothing: the host did not claim a prefix). */
export function isUnder(basePath: string, pathname: string): boolean {
  return basePath !== '' && (pathname === basePath || pathname.startsWith(`${basePath}/`));
}

/** Absolute-form's scheme and authority ("http://host:80"), up to its path or query. */
const SCHEME_AND_AUTHORITY = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/;

/**
 * The path and query of a request target, without trusting it to be origin-form. Absolute-form
 * ("http://host/path") loses only its scheme and authority, as text: a URL parser would resolve
 * "..", "%2e%2e" and backslashes in its path, and route `http://h/ws/a/%2e%2e/b` where `/ws/a/%2e%2e/b`,
 * the same request in origin-form, does not go (a proxy's rule on the target would not see it).
 * A target in neither form (`*`) has the path "", which no channel has.
 */
export function splitTarget(target: string): { pathname: string; search: string } {
  let rest = target;
  if (!rest.startsWith('/')) {
    const authority = SCHEME_AND_AUTHORITY.exec(rest);
    if (!authority) return { pathname: '', search: '' };
    rest = rest.slice(authority[0].length);
    if (rest.startsWith('#')) return { pathname: '', search: '' };
    if (!rest.startsWith('/')) rest = `/${rest}`;
  }
  const q = rest.indexOf('?');
  return q === -1 ? { pathname: rest, search: '' } : { pathname: rest.slice(0, q), search: rest.slice(q + 1) };
}

/** A path segment percent-decoded, or undefined when its percent-encoding is malformed. */
function decodeSegment(part: string): string | undefined {
  try {
    return decodeURIComponent(part);
  } catch {
    return undefined;
  }
}

function splitPath(path: string): string[] {
  return path === '/' || path === '' ? [] : path.slice(1).split('/');
}

function stripTrailingSlash(path: string): string {
  return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
}

/**
 * A request path as one room of a channel, whatever its spelling: each segment percent-decoded
 * and encoded again (`lobb%79` and `lobby` alike), no trailing slash. matchRoute gives the same
 * params for every spelling of a path; a broadcast to a room reaches them all.
 */
export function roomOf(path: string): string {
  return stripTrailingSlash(path)
    .split('/')
    .map((part) => {
      try {
        return encodeURIComponent(decodeURIComponent(part));
      } catch {
        return part;
      }
    })
    .join('/');
}
