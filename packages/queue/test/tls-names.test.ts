// A server given by IP address (nats://10.0.0.5:4222) with a certificate that names that address,
// as one made for it would: nats.js names no server to Node's TLS check then, and Node checked
// the certificate against "localhost", refusing the right one and taking one for "localhost".
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BASIC, expectOk, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend, startExecutionWorker } from '@kb-labs/plugin-execution-queue';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startNatsServer } from '../../../scripts/nats-server.mjs';
import { newPool } from './helpers.js';

let dir: string;

/** `openssl` in `dir`, failing with what it said. */
function openssl(...args: string[]): void {
  const run = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${run.stderr}`);
}

/** A server certificate signed by the test CA, naming `altNames` (e.g. IP:127.0.0.1): `<name>.pem` and `<name>-key.pem`. */
async function serverCert(name: string, altNames: string): Promise<{ certFile: string; keyFile: string }> {
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}-key.pem`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
  await writeFile(path.join(dir, `${name}.ext`), `subjectAltName=${altNames}\n`);
  openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`);
  return { certFile: path.join(dir, `${name}.pem`), keyFile: path.join(dir, `${name}-key.pem`) };
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'kb-queue-tls-'));
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca-key.pem', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=kb test CA');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

it('a server by IP address: its certificate is checked against that address, not "localhost"', async () => {
  const tls = { caFile: path.join(dir, 'ca.pem') };
  const byAddress = await startNatsServer({ tls: await serverCert('by-address', 'IP:127.0.0.1') });
  try {
    const pool = newPool('tls-ip');
    const connection = { servers: byAddress.url, tls };
    const worker = await startExecutionWorker({ connection, pool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
    const backend = new QueueBackend({ connection, pool, plugins: [fixturePlugins.basic] });
    try {
      const echoed = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'by address' }, { timeoutMs: 20_000 });
      expectOk(echoed);
      expect(echoed.data).toBe('by address');
    } finally {
      await backend.shutdown({ timeoutMs: 2000 });
      await worker.close();
    }
  } finally {
    await byAddress.stop();
  }
  // A certificate for "localhost" alone does not name 127.0.0.1: refused, naming the address.
  const byName = await startNatsServer({ tls: await serverCert('by-name', 'DNS:localhost') });
  try {
    const started = startExecutionWorker({ connection: { servers: byName.url, tls }, pool: newPool('tls-ip'), plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
    await expect(started).rejects.toMatchObject({
      name: 'QueueServerError',
      problem: 'unreachable',
      message: expect.stringContaining(`could not connect to the NATS server (${byName.url}): TLS failed: Hostname/IP does not match certificate's altnames: IP: 127.0.0.1 is not in the cert's list`),
    });
    await expect(started).rejects.toMatchObject({ message: expect.stringMatching(/; check connection\.tls: .*the certificate must name the host in the server URL$/) });
    // Given by its name, the same server is taken.
    const worker = await startExecutionWorker({ connection: { servers: byName.url.replace('127.0.0.1', 'localhost'), tls }, pool: newPool('tls-ip'), plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
    await worker.close();
  } finally {
    await byName.stop();
  }
}, 30_000);
