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
