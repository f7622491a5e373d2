import type { IncomingMessage } from 'node:http';

/** A client's Sec-WebSocket-Key: 16 bytes in base64 (RFC 6455 §4.1). */
const CLIENT_KEY = /^[+/0-9A-Za-z]{22}==$/;

/**
 * The status of an upgrade request that can never become a WebSocket (ws would answer it so after
 * the handshake's checks): said before the host's `authenticate` runs and before it takes a place
 * under `maxConnections`, which a flood of bogus requests would otherwise hold. undefined: it may.
 */
export function handshakeRefusal(request: IncomingMessage): { status: number; message: string } | undefined {
  if (request.method !== 'GET') return { status: 405, message: 'A WebSocket upgrade is a GET request' };
  if (String(request.headers.upgrade ?? '').toLowerCase() !== 'websocket') return { status: 400, message: 'Upgrade must be "websocket"' };
  if (!CLIENT_KEY.test(String(request.headers['sec-websocket-key'] ?? '').trim())) return { status: 400, message: 'Missing or invalid Sec-WebSocket-Key header' };
  const version = String(request.headers['sec-websocket-version'] ?? '');
  if (version !== '13' && version !== '8') return { status: 400, message: 'Missing or invalid Sec-WebSocket-Version header' };
  return undefined;
}
