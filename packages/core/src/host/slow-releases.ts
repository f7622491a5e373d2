import { monotonicNow } from '../real-timers.js';
/** Releases past this long are said in health(): each holds its execution's slot. */
export const SLOW_RELEASE_MS = 5000;

/** What health() says of them: releases that began more than SLOW_RELEASE_MS before `now`. */
export function slowReleases(releases: ReadonlyMap<unknown, number>, now = monotonicNow()): string[] {
  const slow = [...releases.values()].filter((since) => now - since > SLOW_RELEASE_MS);
  if (slow.length === 0) return [];
  const oldest = Math.round((now - Math.min(...slow)) / 1000);
  const which = slow.length === 1 ? 'the slot of a finished execution is' : `the slots of ${slow.length} finished executions are`;
  return [`${which} still held after ${SLOW_RELEASE_MS / 1000} s (the oldest for ${oldest} s) until its workspace is removed (a plugin left a very deep or large tree there) or its stopped runner ends: each comes back then`];
}
