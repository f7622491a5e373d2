// A throwaway nats-server for tests, benches and the demo: a free loopback port, a config file and
// a JetStream store in a temp dir, stopped by its pid. Plain ESM, no dependencies.
//
//   const server = await startNatsServer();   // { url, port, pid, storeDir, stop(), restart() }
//   try { ... connect to server.url ... } finally { await server.stop(); }
//
// A parent that dies without calling stop() does not leave the server behind: on Linux it is
// started under `setpriv --pdeathsig` (the kernel signals it when its parent goes, even on
// SIGKILL), and everywhere an exit/signal hook kills what is still running and removes its dir.
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const NATS_SERVER_INSTALL_HINT =
  'install nats-server (Debian/Ubuntu: `apt-get install nats-server`, or `node scripts/install-test-deps.mjs` as root, ' +
  'which the test command runs; macOS: `brew install nats-server`) or set NATS_SERVER_BIN to its binary';

const READY_LINE = 'Server is ready';
const STDERR_TAIL_LINES = 40;
// Debian puts the binary in /usr/sbin, which is not on a non-root user's PATH.
const EXTRA_DIRS = process.platform === 'win32' ? [] : ['/usr/sbin', '/usr/local/sbin', '/sbin'];

function isExecutable(file) {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function findExecutable(command) {
  const names = process.platform === 'win32' ? [`${command}.exe`, command] : [command];
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean), ...EXTRA_DIRS];
  for (const dir of dirs) for (const name of names) if (isExecutable(path.join(dir, name))) return path.join(dir, name);
  return null;
}

/** The nats-server binary to run: `NATS_SERVER_BIN` if set, else the first on PATH (or in sbin). */
export function natsServerBinary() {
  const override = process.env.NATS_SERVER_BIN;
  if (override) return isExecutable(override) ? override : null;
  return findExecutable('nats-server');
}

/** Whether `startNatsServer()` can start a server here. */
export function natsServerAvailable() {
  return natsServerBinary() !== null;
}

let setprivPath;
/** util-linux's setpriv, if it knows --pdeathsig (it execs, so the server keeps setpriv's pid). */
function pdeathsigWrapper() {
  if (setprivPath !== undefined) return setprivPath;
  setprivPath = null;
  if (process.platform !== 'linux') return null;
  const found = findExecutable('setpriv');
  if (found && spawnSync(found, ['--help'], { encoding: 'utf8', env: {} }).stdout?.includes('--pdeathsig')) setprivPath = found;
  return setprivPath;
}

/** A port free on 127.0.0.1 right now (the server may still lose it to a race: see `start`). */
export function freeLoopbackPort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.on('error', reject);
    probe.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

function validatePayload(maxPayload) {
  if (typeof maxPayload === 'number' && Number.isInteger(maxPayload) && maxPayload > 0) return String(maxPayload);
  if (typeof maxPayload === 'string' && /^\d+(B|K|KB|M|MB|G|GB)?$/i.test(maxPayload)) return maxPayload;
  throw new TypeError(`maxPayload: expected a byte count or a size such as '8MB', got ${JSON.stringify(maxPayload)}`);
}

function writeConfig(file, { name, port, maxPayload, storeDir, jetstream, maxSubscriptions, maxConnections, tls, authorization, accounts, maxMemoryStore, cluster }) {
  // JSON string quoting is valid in the NATS config format (and escapes Windows backslashes).
  // A fixed server_name: the same server, as JetStream sees it, before and after a restart.
  const lines = [`server_name: ${JSON.stringify(name)}`, `listen: 127.0.0.1:${port}`, `max_payload: ${maxPayload}`];
  if (maxSubscriptions !== undefined) lines.push(`max_subscriptions: ${Number(maxSubscriptions)}`);
  if (maxConnections !== undefined) lines.push(`max_connections: ${Number(maxConnections)}`);
  if (jetstream) lines.push(`jetstream {`, `  store_dir: ${JSON.stringify(storeDir)}`, ...(maxMemoryStore !== undefined ? [`  max_memory_store: ${Number(maxMemoryStore)}`] : []), `}`);
  if (tls) {
    const verify = tls.clientCaFile ? [`  ca_file: ${JSON.stringify(tls.clientCaFile)}`, '  verify: true'] : [];
    lines.push(`tls {`, `  cert_file: ${JSON.stringify(tls.certFile)}`, `  key_file: ${JSON.stringify(tls.keyFile)}`, ...verify, `}`);
  }
  if (authorization) lines.push(`authorization ${authorization}`);
  if (accounts) lines.push(`accounts ${accounts}`);
  if (cluster) {
    const routes = cluster.routes.map((routePort) => JSON.stringify(`nats-route://127.0.0.1:${routePort}`));
    lines.push(`cluster {`, `  name: ${JSON.stringify(cluster.name)}`, `  listen: 127.0.0.1:${cluster.port}`, `  routes: [${routes.join(', ')}]`, `}`);
  }
  lines.push('');
  writeFileSync(file, lines.join('\n'));
}

// ---- processes still running, killed if the parent exits without stopping them ----

const live = new Set(); // of { child, dir }
const SIGNALS = process.platform === 'win32' ? ['SIGINT'] : ['SIGINT', 'SIGTERM', 'SIGHUP'];

const sleepCell = new Int32Array(new SharedArrayBuffer(4));

/** Whether `pid` has ended (a zombie has: nobody may reap it while the parent is exiting). */
function endedSync(pid) {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  if (process.platform !== 'linux') return false;
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

// Runs on the parent's way out, where nothing asynchronous runs any more.
function killAllSync() {
  for (const entry of live) {
    try {
      entry.child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  // A server still alive could write into its store while it is being removed.
  const deadline = Date.now() + 2_000;
  for (const entry of live) {
    while (!endedSync(entry.child.pid) && Date.now() < deadline) Atomics.wait(sleepCell, 0, 0, 10);
    try {
      rmSync(entry.dir, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // best effort on the way out
    }
  }
  live.clear();
}

function onSignal(signal) {
  killAllSync();
  unhook();
  // Someone else handles this signal (vitest does): let them. Otherwise keep its default: exit.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

const signalHandlers = Object.fromEntries(SIGNALS.map((signal) => [signal, () => onSignal(signal)]));

function hook(entry) {
  if (live.size === 0) {
    process.on('exit', killAllSync);
    for (const signal of SIGNALS) process.on(signal, signalHandlers[signal]);
  }
  live.add(entry);
}

function unhook(entry) {
  if (entry) live.delete(entry);
  if (live.size > 0) return;
  process.off('exit', killAllSync);
  for (const signal of SIGNALS) process.off(signal, signalHandlers[signal]);
}

// ---- one server process ----

/**
 * Spawn nats-server on `configFile` and resolve once it logs that it is ready.
 * Rejects with its stderr tail if it exits first or stays silent past `timeoutMs`;
 * `error.addressInUse` tells a lost port race apart from any other failure.
 */
function spawnServer(binary, configFile, timeoutMs) {
  const wrapper = pdeathsigWrapper();
  const [command, args] = wrapper
    ? [wrapper, ['--pdeathsig', 'SIGTERM', '--', binary, '-c', configFile]]
    : [binary, ['-c', configFile]];
  // An explicit, empty environment: the server needs none of ours.
  const child = spawn(command, args, { env: {}, stdio: ['ignore', 'ignore', 'pipe'], windowsHide: true });
  const tail = [];
  let partial = '';
  const stderrTail = () => [...tail, partial].filter(Boolean).join('\n');

  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (message, extra = {}) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
      const text = stderrTail();
      reject(Object.assign(new Error(`${message}${text ? `; its stderr ends with:\n${text}` : ' (nothing on its stderr)'}`), extra));
    };
    const timer = setTimeout(() => fail(`nats-server (${configFile}) did not log "${READY_LINE}" within ${timeoutMs} ms`), timeoutMs);
    // Keep reading stderr for the server's whole life: a full pipe would block its logging.
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop();
      for (const line of lines) {
        tail.push(line);
        if (tail.length > STDERR_TAIL_LINES) tail.shift();
        if (!settled && line.includes(READY_LINE)) {
          settled = true;
          clearTimeout(timer);
          // The server lives as long as its parent wants it, never longer: it does not keep
          // the parent's event loop alive (the exit hook stops whatever is left).
          child.unref();
          child.stderr.unref();
          resolve({ child, stderrTail });
        }
      }
    });
    child.on('error', (error) => fail(`nats-server could not be started (${command}): ${error.message}`, { cause: error }));
    // 'close' (not 'exit'): by then the last stderr bytes have been read.
    child.on('close', (code, signal) =>
      fail(`nats-server exited (${signal ?? `code ${code}`}) before it was ready`, {
        addressInUse: /address already in use/i.test(stderrTail()),
      }),
    );
  });
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
async function terminate(child, graceMs) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  let timer;
  const graceOver = new Promise((resolve) => (timer = setTimeout(() => resolve('timeout'), graceMs)));
  if ((await Promise.race([exited, graceOver])) === 'timeout') {
    child.kill('SIGKILL');
    await exited;
  }
  clearTimeout(timer);
}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Write the config for a port and start the server on it: a free port when `fixedPort` is
 * undefined (another is picked if that one is taken before the server binds it), else
 * `fixedPort`, retried for `retryBusyMs` (after a restart the old socket may linger a moment).
 */
async function launch(binary, { configFile, name, maxPayload, storeDir, readyTimeoutMs, jetstream, maxSubscriptions, maxConnections, tls, authorization, accounts, maxMemoryStore, cluster }, fixedPort, retryBusyMs) {
  const until = Date.now() + retryBusyMs;
  for (let attempt = 1; ; attempt++) {
    const port = fixedPort ?? (await freeLoopbackPort());
    writeConfig(configFile, { name, port, maxPayload, storeDir, jetstream, maxSubscriptions, maxConnections, tls, authorization, accounts, maxMemoryStore, cluster });
    try {
      return { ...(await spawnServer(binary, configFile, readyTimeoutMs)), port };
    } catch (error) {
      if (!error.addressInUse) throw error;
      if (fixedPort === undefined ? attempt >= 5 : Date.now() >= until) throw error;
      if (fixedPort !== undefined) await delay(100);
    }
  }
}

/**
 * Start a nats-server (with JetStream, unless `jetstream: false`) on 127.0.0.1.
 * @param {object} [options]
 * @param {number} [options.port] fixed port; @default a free one
 * @param {string} [options.storeDir] JetStream store (kept by `stop()` when given); @default a dir inside the temp dir
 * @param {string|number} [options.maxPayload] `max_payload` (2.9.x reads it only from a config file); @default '8MB'
 * @param {number} [options.readyTimeoutMs] how long to wait for "Server is ready"; @default 10000
 * @param {number} [options.stopGraceMs] SIGTERM → SIGKILL delay in `stop()`/`restart()`; @default 5000
 * @param {boolean} [options.jetstream] false: a server without JetStream (what a user who forgot `-js` runs); @default true
 * @param {number} [options.maxSubscriptions] the server's `max_subscriptions` per connection; @default no limit
 * @param {number} [options.maxConnections] the server's `max_connections`; @default no limit
 * @param {{ certFile: string, keyFile: string, clientCaFile?: string }} [options.tls] a server that speaks only TLS, with this certificate (and, with `clientCaFile`, wants a client certificate signed by that CA); @default plain TCP
 * @param {string} [options.authorization] the body of an `authorization { … }` block (users and their permissions), as nats-server's config reads it; @default none
 * @param {string} [options.accounts] the body of an `accounts { … }` block (accounts, their JetStream limits and users); @default none
 * @param {number} [options.maxMemoryStore] JetStream's `max_memory_store`, in bytes (all memory streams together); @default the server's (a share of the machine's memory)
 * @param {{ name: string, port: number, routes: number[] }} [options.cluster] a member of a cluster: its route port, and the route ports of the others (see startNatsCluster); @default a server alone
 */
export async function startNatsServer({ port, storeDir, maxPayload = '8MB', readyTimeoutMs = 10_000, stopGraceMs = 5_000, jetstream = true, maxSubscriptions, maxConnections, tls, authorization, accounts, maxMemoryStore, cluster } = {}) {
  const binary = natsServerBinary();
  if (!binary) {
    const where = process.env.NATS_SERVER_BIN ? `NATS_SERVER_BIN (${process.env.NATS_SERVER_BIN}) is not an executable` : 'nats-server is not on PATH';
    throw new Error(`${where}: ${NATS_SERVER_INSTALL_HINT}`);
  }
  const payload = validatePayload(maxPayload);
  for (const [name, value] of Object.entries({ maxSubscriptions, maxConnections, maxMemoryStore })) {
    if (value !== undefined && !(Number.isInteger(value) && value > 0)) throw new TypeError(`${name}: expected a positive integer, got ${JSON.stringify(value)}`);
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nats-server-'));
  const store = storeDir ?? path.join(dir, 'store');
  mkdirSync(store, { recursive: true });
  const configFile = path.join(dir, 'nats.conf');
  const settings = { configFile, name: path.basename(dir), maxPayload: payload, storeDir: store, readyTimeoutMs, jetstream, maxSubscriptions, maxConnections, tls, authorization, accounts, maxMemoryStore, cluster };
  const entry = { child: null, dir };

  let current;
  try {
    current = await launch(binary, settings, port, 0);
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  entry.child = current.child;
  hook(entry);
  const chosenPort = current.port;
  let stopped = false;

  const server = {
    url: `nats://127.0.0.1:${chosenPort}`,
    port: chosenPort,
    /** Its server_name (what JetStream names it by: a stream's cluster leader and replicas). */
    name: settings.name,
    storeDir: store,
    configFile,
    /** The server's pid (a new one after `restart()`). */
    get pid() {
      return current.child.pid;
    },
    /** The last lines the server logged. */
    stderrTail: () => current.stderrTail(),
    /** Stop it (SIGTERM, SIGKILL after a grace) and remove its temp dir. Idempotent. */
    async stop() {
      if (stopped) return;
      stopped = true;
      try {
        await terminate(current.child, stopGraceMs);
      } finally {
        unhook(entry);
        rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
      }
    },
    /**
     * Stop the server and start it again on the same port with the same JetStream store: file
     * streams, their consumers and messages survive; memory streams are gone, config and all.
     * `downtimeMs` keeps it down that long.
     */
    async restart({ downtimeMs = 0 } = {}) {
      if (stopped) throw new Error('restart(): this nats-server was stopped');
      await terminate(current.child, stopGraceMs);
      if (downtimeMs > 0) await delay(downtimeMs);
      current = await launch(binary, settings, chosenPort, 5_000);
      entry.child = current.child;
      return server;
    },
  };
  if (Symbol.asyncDispose) server[Symbol.asyncDispose] = () => server.stop();
  return server;
}

/**
 * A cluster of `size` nats-servers on 127.0.0.1, routed to each other (JetStream on each, so a
 * stream may have up to `size` replicas). Resolves once every server is ready; JetStream elects
 * its leaders a few seconds later (a client's JetStream requests time out until then).
 * @param {object} [options] `size` (@default 3), and what startNatsServer takes for each server
 * @returns {Promise<{ servers: object[], urls: string[], stop(): Promise<void> }>}
 */
export async function startNatsCluster({ size = 3, ...options } = {}) {
  const routePorts = [];
  for (let i = 0; i < size; i++) routePorts.push(await freeLoopbackPort());
  const name = `kb-test-${process.pid}-${routePorts[0]}`;
  const started = await Promise.allSettled(
    routePorts.map((port) => startNatsServer({ ...options, cluster: { name, port, routes: routePorts.filter((other) => other !== port) } })),
  );
  const servers = started.filter((result) => result.status === 'fulfilled').map((result) => result.value);
  const stop = () => Promise.all(servers.map((server) => server.stop())).then(() => undefined);
  const failed = started.find((result) => result.status === 'rejected');
  if (failed) {
    await stop();
    throw failed.reason;
  }
  return { servers, urls: servers.map((server) => server.url), stop };
}

