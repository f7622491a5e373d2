/**
 * A host or worker closed while its connection is being made again to a server that accepts
 * connections and says nothing (a stopped server, a half-open link): shutdown() and close()
 * resolve, and the process that embeds it ends by itself, not once that server speaks again.
 */
import { fixturePlugins, waitFor } from '@kb-labs/plugin-execution-conformance';
import { describe, expect, it } from 'vitest';
import { startNatsServer } from '../../../scripts/nats-server.mjs';
import { embeddingProcess, sleep } from './chaos-kit.js';

/** Past the 10 to 15 s of silence after which the client drops its connection and dials again (each dial waits up to 5 s for the stopped server). */
const RECONNECTING_AFTER_MS = 17_000;

describe('closed while reconnecting to a silent server', () => {
  for (const role of ['host', 'worker'] as const) {
    it(`a ${role}'s process ends by itself, without waiting for the server to speak again`, async () => {
      const own = await startNatsServer();
      const { child, said, exited } = embeddingProcess('close-while-silent.mjs', [role, own.url, fixturePlugins.basic]);
      try {
        await waitFor(() => said().includes('ready'), 15_000);
        process.kill(own.pid, 'SIGSTOP');
        await sleep(RECONNECTING_AFTER_MS);
        child.stdin.write('close\n');
        const ended = await Promise.race([exited, sleep(10_000).then(() => 'still running')]);
        expect(ended, said()).toBe(0);
        expect(said()).toContain('closed');
      } finally {
        child.kill('SIGKILL');
        process.kill(own.pid, 'SIGCONT');
        await own.stop();
      }
    }, 60_000);
  }
});
