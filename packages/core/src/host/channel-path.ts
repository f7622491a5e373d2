/**
 * A channel's URL path as a mount matches it, for the manifest's check (core) and the mount's
 * routes (channels) alike: literal segments and `:name` parameters, a trailing slash ignored.
 */
export type ChannelPathSegment = { literal: string } | { param: string };

export interface ChannelPathParts {
  readonly segments: readonly ChannelPathSegment[];
  /** The same for two paths that match the same URLs (`/rooms/:id` and `/rooms/:name/`). */
  readonly shape: string;
  /** The parameter names, in order. */
  readonly params: readonly string[];
}

const PARAM = /^:([A-Za-z_]\w*)$/;

export function channelPathParts(channelPath: string): ChannelPathParts {
  const trimmed = channelPath.length > 1 && channelPath.endsWith('/') ? channelPath.slice(0, -1) : channelPath;
  const parts = trimmed === '/' || trimmed === '' ? [] : trimmed.slice(1).split('/');
  const segments = parts.map((part): ChannelPathSegment => {
    const param = PARAM.exec(part);
    return param ? { param: param[1]! } : { literal: part };
  });
  const params = segments.flatMap((segment) => ('param' in segment ? [segment.param] : []));
  return { segments, shape: segments.map((segment) => ('param' in segment ? ':' : segment.literal)).join('/'), params };
}

/** The first parameter name a path uses twice (no request could give both their values), if any. */
export function repeatedParam(parts: ChannelPathParts): string | undefined {
  return parts.params.find((name, i) => parts.params.indexOf(name) !== i);
}
