// connection.servers holding a NUL character (a value read from a C string or a file padded with
// zeros): refused before anything connects, as an empty one is, by host and worker.
import { fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { ValidationError } from '@kb-labs/plugin-execution-core';
import { QueueBackend, startExecutionWorker } from '@kb-labs/plugin-execution-queue';
import { describe, expect, it } from 'vitest';

describe('connection.servers with a NUL character', () => {
  it('is refused by host and worker, naming connection.servers, wherever the NUL is', async () => {
    const said = [{ path: 'connection.servers', message: 'must be a server URL (nats://host:4222) or a non-empty array of them' }];
    for (const servers of ['nats://127.0.0.1:4222\0', ['nats://127.0.0.1:4222', 'nats://127.0.0.1:4223\0']]) {
      const hostRefusal = (() => {
        try {
          new QueueBackend({ connection: { servers }, plugins: [fixturePlugins.basic] });
          return undefined;
        } catch (error) {
          return error;
        }
      })();
      expect(hostRefusal).toBeInstanceOf(ValidationError);
      expect((hostRefusal as ValidationError).details.issues).toEqual(said);
      const workerRefusal = await startExecutionWorker({ connection: { servers }, plugins: [fixturePlugins.basic] }).catch((error: unknown) => error);
      expect(workerRefusal).toBeInstanceOf(ValidationError);
      expect((workerRefusal as ValidationError).details.issues).toEqual(said);
    }
  });
});
