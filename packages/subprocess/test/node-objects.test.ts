import net from 'node:net';
import { expectError } from '@kb-labs/plugin-execution-conformance';
import { SubprocessBackend } from '@kb-labs/plugin-execution-subprocess';
import { afterAll, describe, expect, it } from 'vitest';
import { PROBE, probePlugin } from './helpers.js';

// Objects of Node's own that structured clone keeps (in-process and worker-pool hand them over)
// and that v8's serialiser, this backend's wire, writes as {} on Node 22 and 24 (a BlockList, a
// SocketAddress; a CryptoKey on 22) or refuses (Node 20). Before, on 22 and 24, the caller got
// `{}` for them, and the handler `{}` for its input, without a word.
const backend = new SubprocessBackend({ plugins: [probePlugin], workspace: false, sandbox: 'off' });

afterAll(() => backend.shutdown());

describe('a value of Node\'s own that the subprocess wire cannot carry', () => {
  it('in a result is VALIDATION_ERROR naming where it is, on every Node', async () => {
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'node-objects' });
    expectError(result, 'VALIDATION_ERROR');
    expect(result.error.details).toMatchObject({ path: 'result.kept.list' });
    expect(result.error.message).toMatch(/BlockList/);
  });

  it('in an input is VALIDATION_ERROR naming where it is, before any child runs it', async () => {
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'node-objects', input: { echo: { n: 1, at: new net.SocketAddress({ address: '127.0.0.1' }) } } });
    expectError(result, 'VALIDATION_ERROR');
    expect(result.error.details).toMatchObject({ path: 'input.echo.at' });
    expect(result.error.message).toMatch(/SocketAddress/);
  });
});
