import type { IncomingMessage } from 'node:http';

/** A client's Sec-WebSocket-Key: 16 bytes in base64 (RFC 6455 §4.1). */
const CLIENT_KEY = /^[+/0-9A-Za-z]{22}==$/;
/** A subprotocol's name: an HTTP token (RFC 7230 §3.2.6). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * The status of an upgrade request that can never become a WebSocket (ws would answer it so after
 * the handshake's checks): said before the host's `authenticate` runs and before it takes a place
 * under `maxConnections`, which a flood of bogus requests would otherwise hold. undefined: it may.
 */
export function handshakeRefusal(request: IncomingMessage): { status: number; message: string; headers?: Record<string, string> } | undefined {
  if (request.method !== 'GET') return { status: 405, message: 'A WebSocket upgrade is a GET request', headers: { Allow: 'GET' } };
  if (String(request.headers.upgrade ?? '').toLowerCase() !== 'websocket') return { status: 400, message: 'Upgrade must be "websocket"' };
  if (!CLIENT_KEY.test(String(request.headers['sec-websocket-key'] ?? ''))) return { status: 400, message: 'Missing or invalid Sec-WebSocket-Key header' };
  // Read as ws reads it (a number: "013" is 13). The versions the server speaks go with the refusal (RFC 6455 §4.4).
  const version = Number(request.headers['sec-websocket-version']);
  if (version !== 13 && version !== 8) return { status: 400, message: 'Missing or invalid Sec-WebSocket-Version header', headers: { 'Sec-WebSocket-Version': '13, 8' } };
  const protocols = request.headers['sec-websocket-protocol'];
  if (protocols !== undefined && !validProtocols(protocols)) return { status: 400, message: 'Invalid Sec-WebSocket-Protocol header' };
  return undefined;
}

/** A comma-separated list of distinct tokens, as ws requires before it answers. */
function validProtocols(header: string): boolean {
  // Only spaces and tabs around a name, as HTTP allows (String.trim would take a no-break space too).
  const names = header.split(',').map((name) => name.replace(/^[ \t]+|[ \t]+$/g, ''));
  return names.every((name) => TOKEN.test(name)) && new Set(names).size === names.length;
}
