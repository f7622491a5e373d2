import { describe, expect, it } from 'vitest';
import { serverProblem } from '../src/shared/connection.js';

// The messages nats.js gives (recorded against nats-server 2.9: a user without JetStream API
// permissions, a wrong password, a server without JetStream, nobody listening); the queue
// backend's test runs the JetStream one against a real server. Each says what to do about it.
describe('serverProblem', () => {
  const servers = { servers: 'nats://10.0.0.5:4222' };
  it('names the server and tells a permission problem from a login problem and from no JetStream', () => {
    expect(serverProblem('The worker', servers, new Error('Permissions Violation for Publish to "$JS.API.INFO"'))).toBe(
      'The worker cannot use the NATS server (nats://10.0.0.5:4222): its user may not do what the pool needs (Permissions Violation for Publish to "$JS.API.INFO"); docs/backends/queue.md, "Security", lists the subjects',
    );
    expect(serverProblem('The queue backend', servers, new Error('Authorization Violation'))).toBe(
      'The queue backend could not connect to the NATS server (nats://10.0.0.5:4222): Authorization Violation; check connection.user/pass, token, seed or credsFile',
    );
    expect(serverProblem('The worker', servers, new Error('jetstream is not enabled'))).toMatch(/JetStream is not enabled there; start nats-server with -js/);
    expect(serverProblem('The worker', { servers: ['nats://a:1', 'nats://b:2'] }, 'connection refused')).toBe(
      'The worker could not connect to the NATS server (nats://a:1, nats://b:2): connection refused',
    );
  });
});
