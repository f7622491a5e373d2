import { describe, expect, it } from 'vitest';
import os from 'node:os';
import { resolveWorkerOptions } from '../src/runner/worker-options.js';
import { QueueServerError, serverProblem } from '../src/shared/server-problem.js';

// The messages nats.js gives (recorded against nats-server 2.9: a user without JetStream API
// permissions, a wrong password, a server without JetStream, nobody listening); the queue
// backend's test runs the JetStream one against a real server. Each says what to do about it.
describe('serverProblem', () => {
  const servers = { servers: 'nats://10.0.0.5:4222' };
  it('names the server and tells a permission problem from a login problem and from no JetStream, by message and by `problem`', () => {
    const problem = (who: string, options: { servers: string | string[] }, error: unknown) => {
      const found = serverProblem(who, options, error);
      expect(found).toBeInstanceOf(QueueServerError);
      expect(found.cause).toBe(error);
      return [found.problem, found.message, found.servers];
    };
    expect(problem('The worker', servers, new Error('Permissions Violation for Publish to "$JS.API.INFO"'))).toEqual([
      'not-permitted',
      'The worker cannot use the NATS server (nats://10.0.0.5:4222): its user may not do what the pool needs (Permissions Violation for Publish to "$JS.API.INFO"); docs/backends/queue.md, "Security", lists the subjects',
      'nats://10.0.0.5:4222',
    ]);
    expect(problem('The queue backend', servers, new Error('Authorization Violation'))).toEqual([
      'auth-failed',
      'The queue backend could not connect to the NATS server (nats://10.0.0.5:4222): Authorization Violation; check connection.user/pass, token, seed or credsFile',
      'nats://10.0.0.5:4222',
    ]);
    // Credentials that cannot be used before the server is asked: a seed that is not one, a creds file that is not there.
    expect(problem('The worker', servers, new Error('nkeys: invalid checksum'))).toEqual([
      'auth-failed',
      'The worker cannot use its credentials: nkeys: invalid checksum; check connection.seed (an NKey seed, "SU…") or credsFile',
      'nats://10.0.0.5:4222',
    ]);
    expect(problem('The worker', servers, new Error('unable to parse credentials'))[0]).toBe('auth-failed');
    expect(problem('The worker', { ...servers, tls: { certFile: '/etc/kb/client.pem' } } as never, new Error("/etc/kb/client.pem doesn't exist"))).toEqual([
      'unreachable',
      "The worker could not connect to the NATS server (nats://10.0.0.5:4222): a file connection.tls names cannot be read (/etc/kb/client.pem doesn't exist); check its caFile, certFile and keyFile",
      'nats://10.0.0.5:4222',
    ]);
    // A client key that is not the certificate's (recorded from Node's TLS against nats-server 2.9): the key is named, not the server's certificate.
    expect(problem('The worker', { ...servers, tls: { certFile: '/etc/kb/client.pem', keyFile: '/etc/kb/old-client.key' } } as never, new Error('error:05800074:x509 certificate routines::key values mismatch'))).toEqual([
      'unreachable',
      'The worker could not connect to the NATS server (nats://10.0.0.5:4222): TLS failed: error:05800074:x509 certificate routines::key values mismatch; the client key (connection.tls keyFile or key) is not the key of the client certificate (certFile or cert)',
      'nats://10.0.0.5:4222',
    ]);
    expect(problem('The worker', servers, new Error('jetstream is not enabled'))).toEqual(['no-jetstream', expect.stringMatching(/JetStream is not enabled there; start nats-server with -js/), 'nats://10.0.0.5:4222']);
    expect(problem('The worker', { servers: ['nats://a:1', 'nats://b:2'] }, 'connection refused')).toEqual([
      'unreachable',
      'The worker could not connect to the NATS server (nats://a:1, nats://b:2): connection refused',
      'nats://a:1, nats://b:2',
    ]);
    // A URL's credentials are never shown.
    expect(problem('The worker', { servers: 'nats://kb:secret@10.0.0.5:4222' }, new Error('Authorization Violation'))[2]).toBe('nats://***@10.0.0.5:4222');
    expect(problem('The worker', { servers: ['kb:secret@10.0.0.5:4222', ' nats://kb:se/cr@et@10.0.0.6:4222'] }, new Error('Authorization Violation'))[2]).toBe('***@10.0.0.5:4222, nats://***@10.0.0.6:4222');
    // One said already (a caller's catch that passes on what an inner call explained) is passed on as it is, not said again as unreachable.
    const said = serverProblem('The worker', servers, new Error('Permissions Violation for Publish to "$JS.API.INFO"'));
    expect(serverProblem('The worker', servers, said)).toBe(said);
  });
});

describe('a worker\'s default id', () => {
  it('keeps its pid and random part on a machine with a long host name (the host name is what is cut), so two workers there differ', () => {
    const hostname = os.hostname;
    os.hostname = () => `worker-${'a'.repeat(50)}-node01.example.internal`;
    try {
      const ids = [0, 1].map(() => resolveWorkerOptions({ plugins: ['/nowhere'] }).id);
      for (const id of ids) {
        expect(id.length).toBeLessThanOrEqual(64);
        expect(id).toMatch(new RegExp(`^worker-a+-${process.pid}-[a-z0-9]+$`));
      }
      expect(ids[0]).not.toBe(ids[1]);
    } finally {
      os.hostname = hostname;
    }
  });
});
