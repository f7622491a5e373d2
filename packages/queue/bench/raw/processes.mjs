// Bench processes: started with an explicit environment (an inherited NODE_EXTRA_CA_CERTS alone
// adds ~30 ms to every Node start), "ready" awaited on stdout, stopped by pid whatever happened.
import { spawn } from 'node:child_process';

/** The environment of a bench process: PATH and what it is told, nothing else of ours. */
export function benchEnv(vars) {
  return { PATH: process.env.PATH ?? '', ...vars };
}

const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** Start `node script` and resolve once it prints a line starting with "ready". */
export function startProcess(script, env, { readyTimeoutMs = 15_000 } = {}) {
  const child = spawn(process.execPath, [script], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  child.on('exit', () => running.delete(child));
  let output = '';
  const collect = (chunk) => {
    output = (output + chunk).slice(-4_000);
  };
  child.stdout.setEncoding('utf8').on('data', collect);
  child.stderr.setEncoding('utf8').on('data', collect);
  const handle = {
    child,
    pid: child.pid,
    /** SIGTERM, SIGKILL after `graceMs`; resolves once it has exited. */
    async stop(graceMs = 2_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${script} was not ready within ${readyTimeoutMs} ms; it printed:\n${output}`));
    }, readyTimeoutMs);
    child.stdout.on('data', () => {
      if (!/^ready/m.test(output)) return;
      clearTimeout(timer);
      resolve(handle);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${script} exited (${signal ?? `code ${code}`}) before it was ready; it printed:\n${output}`));
    });
  });
}

/** Start `count` copies of a script side by side. */
export async function startProcesses(count, script, env) {
  const started = await Promise.allSettled(Array.from({ length: count }, () => startProcess(script, env)));
  const failed = started.find((s) => s.status === 'rejected');
  if (failed) {
    await Promise.all(started.filter((s) => s.status === 'fulfilled').map((s) => s.value.stop()));
    throw failed.reason;
  }
  return started.map((s) => s.value);
}
