// One nats-server for the package's tests (vitest `globalSetup`): started before any test file,
// its URL handed to them as `inject('natsUrl')`, stopped by its pid when the run ends, whatever
// happened (a run that dies first takes it along: see scripts/nats-server.mjs). Tests that
// restart or stop a server start a private one with startNatsServer(), not this shared one.
import type { TestProject } from 'vitest/node';
import { NATS_SERVER_INSTALL_HINT, natsServerAvailable, startNatsServer } from '../../../scripts/nats-server.mjs';

declare module 'vitest' {
  export interface ProvidedContext {
    /** URL of the nats-server the global setup started for this run (`nats://127.0.0.1:PORT`). */
    natsUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (!natsServerAvailable()) {
    // Never a silent skip: the queue backend's tests mean nothing without a real server.
    const where = process.env.CI === 'true' ? 'CI: `node scripts/install-test-deps.mjs` (the test command) should have installed it; ' : '';
    throw new Error(`The queue backend's tests need nats-server. ${where}${NATS_SERVER_INSTALL_HINT}.`);
  }
  const server = await startNatsServer({ maxPayload: '8MB' });
  project.provide('natsUrl', server.url);
  return async () => {
    await server.stop();
  };
}
