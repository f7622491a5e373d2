/**
 * A server URL as the NATS client reads it (one without a scheme is `nats://`), or undefined when
 * it is not a URL. Every place that looks inside a server URL reads it here, so they agree.
 */
export function parseServerUrl(url: string): URL | undefined {
  const text = url.trim();
  try {
    return new URL(text.includes('://') ? text : `nats://${text}`);
  } catch {
    return undefined;
  }
}

/** A server URL's host name or address (an IPv6 one without its brackets); '' when it is not a URL. */
export function serverHost(url: string): string {
  return parseServerUrl(url)?.hostname.replace(/^\[|\]$/g, '') ?? '';
}

/** `url` with what comes before its last `@` after the scheme (`user:pass`, with or without a scheme, with a "/" in the password) as `***`. */
export function withoutCredentials(url: string): string {
  const at = url.lastIndexOf('@');
  if (at < 0) return url;
  const scheme = /^\s*[a-z][\w+.-]*:\/\//i.exec(url)?.[0] ?? '';
  return `${scheme.trim()}***@${url.slice(at + 1)}`;
}
