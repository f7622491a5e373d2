import { describe, expect, it } from 'vitest';
import { parseServerUrl, serverHost } from '../src/shared/server-url.js';

describe('a server URL as the NATS client reads it', () => {
  it('takes one without a scheme as nats://, and one with spaces around it', () => {
    expect(parseServerUrl('10.0.0.5:4222')).toMatchObject({ protocol: 'nats:', hostname: '10.0.0.5', port: '4222' });
    expect(parseServerUrl(' tls://nats.example:4443\n')).toMatchObject({ protocol: 'tls:', hostname: 'nats.example', port: '4443' });
    expect(parseServerUrl('kb:secret@localhost')).toMatchObject({ protocol: 'nats:', hostname: 'localhost', username: 'kb', port: '' });
  });

  it('is undefined for what is not a URL (a port past 65535, a space in the host)', () => {
    expect(parseServerUrl('nats://127.0.0.1:99999')).toBeUndefined();
    expect(parseServerUrl('nats host:4222')).toBeUndefined();
  });

  it('gives the host name or address, an IPv6 one without its brackets, and "" for what is not a URL', () => {
    expect(serverHost('nats://kb:secret@nats.example:4222')).toBe('nats.example');
    expect(serverHost(' 127.0.0.1:4222 ')).toBe('127.0.0.1');
    expect(serverHost('[::1]:4222')).toBe('::1');
    expect(serverHost('tls://[fd00::5]')).toBe('fd00::5');
    expect(serverHost('nats://127.0.0.1:99999')).toBe('');
  });
});
