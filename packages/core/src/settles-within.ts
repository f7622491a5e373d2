import { clearTimeout, setTimeout } from './real-timers.js';
/**
 * Whether `promise` settles (either way) within `ms`; the timer is cleared either way, so none is
 * left behind. `keepAlive: false`: the timer does not keep the process alive meanwhile (what it
 * bounds may never settle).
 */
export function settlesWithin(promise: Promise<unknown>, ms: number, keepAlive = true): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    if (!keepAlive) timer.unref();
    const done = () => {
      clearTimeout(timer);
      resolve(true);
    };
    promise.then(done, done);
  });
}
