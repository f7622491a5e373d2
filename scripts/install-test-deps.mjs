// System packages the tests need, installed where they are missing and can be: bubblewrap (the
// subprocess backend's sandbox, tested for real), nats-server (the queue backend's tests start
// their own on a free port) openssl (the queue's TLS tests make their certificates with it) and tzdata (the sandbox's time-zone test). Debian/Ubuntu as root: apt-get. Elsewhere it says what to install;
// the tests that need a missing one fail rather than skip.
import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { NATS_SERVER_INSTALL_HINT, natsServerAvailable } from './nats-server.mjs';

function onPath(command) {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    try {
      accessSync(path.join(dir, command), constants.X_OK);
      return true;
    } catch {
      // next
    }
  }
  return false;
}

const needed = [
  { name: 'bubblewrap', debian: 'bubblewrap', linuxOnly: true, present: () => onPath('bwrap') },
  // Debian installs it in /usr/sbin, which natsServerAvailable() also looks in.
  { name: 'nats-server', debian: 'nats-server', present: natsServerAvailable, hint: NATS_SERVER_INSTALL_HINT },
  { name: 'openssl', debian: 'openssl', present: () => onPath('openssl'), hint: 'install OpenSSL (its openssl command on PATH)' },
  // The sandbox's time-zone test points a host's /etc/localtime at a zone of tzdata's.
  { name: 'tzdata', debian: 'tzdata', linuxOnly: true, present: () => existsSync('/usr/share/zoneinfo/Asia/Tokyo'), hint: 'install the tzdata package (/usr/share/zoneinfo)' },
];

if (process.env.NATS_SERVER_BIN && !natsServerAvailable()) {
  console.error(`install-test-deps: NATS_SERVER_BIN (${process.env.NATS_SERVER_BIN}) is not an executable; unset it or point it at nats-server.`);
  process.exit(1);
}
if (process.platform !== 'linux') {
  console.log(`install-test-deps: ${process.platform}: the bubblewrap sandbox is Linux-only; its tests are skipped here.`);
  const missing = needed.filter((n) => !n.linuxOnly && !n.present());
  for (const m of missing) console.error(`install-test-deps: missing ${m.name}: ${m.hint}.`);
  process.exit(missing.length ? 1 : 0);
}
const missing = needed.filter((n) => !n.present());
if (missing.length === 0) process.exit(0);
const packages = missing.map((m) => m.debian);
const canApt = process.getuid?.() === 0 && onPath('apt-get');
if (!canApt) {
  console.error(`install-test-deps: missing ${packages.join(', ')}; install ${packages.length > 1 ? 'them' : 'it'} (e.g. sudo apt-get install ${packages.join(' ')}).`);
  process.exit(1);
}
console.log(`install-test-deps: apt-get install ${packages.join(' ')}`);
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
const install = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...packages], { stdio: 'inherit', env });
if (install.status !== 0) process.exit(install.status ?? 1);
const stillMissing = missing.filter((m) => !m.present());
if (stillMissing.length) {
  console.error(`install-test-deps: apt-get installed ${packages.join(' ')}, yet ${stillMissing.map((m) => m.name).join(', ')} cannot be found.`);
  process.exit(1);
}

if (packages.includes('nats-server')) await reportPackagedService();

/**
 * Debian's nats-server package enables a systemd unit on the fixed port 4222 and starts it where
 * systemd runs (not in a container). The tests never use it: each starts its own server on a free
 * port. Say so if one answers, so that nobody mistakes it for ours.
 */
async function reportPackagedService() {
  const socket = net.connect({ host: '127.0.0.1', port: 4222 });
  const listening = await new Promise((resolve) => {
    socket.setTimeout(1_000);
    socket.once('connect', () => resolve(true));
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => resolve(false));
  });
  socket.destroy();
  if (!listening) return;
  const systemd = existsSync('/run/systemd/system');
  console.log(
    `install-test-deps: something listens on 127.0.0.1:4222${systemd ? " (the package's nats-server.service, started by systemd)" : ''}. ` +
      'The tests do not use it (each starts its own server on a free port); `systemctl disable --now nats-server` stops it for good.',
  );
}
