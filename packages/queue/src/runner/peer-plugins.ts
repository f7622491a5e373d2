import type { PresenceBody } from '../shared/wire.js';
import { monotonicNow } from '@kb-labs/plugin-execution-core/backend-kit';

/** A peer is taken for gone once it has been silent for this many of its own presence periods. */
const SILENT_PERIODS = 3;

/**
 * Which plugin versions the other workers of the pool have, as their presence says (each worker
 * says it every `heartbeatMs`). A worker given a task for a plugin version it lacks hands it back
 * to the stream for as long as a live peer has that version: in a rolling upgrade under load, the
 * task waits for an upgraded worker's free slot instead of failing on an old worker after a few
 * hand-backs.
 */
export class PeerPlugins {
  readonly #self: string;
  /** This worker's own presence period: how long it gives its peers to be heard once it listens. */
  readonly #periodMs: number;
  readonly #peers = new Map<string, { plugins: Set<string>; seenAt: number; periodMs: number }>();
  /** When silent peers were last let go of as presences came in. */
  #sweptAt = 0;
  /** When it began to hear the pool's presences (`listening`). */
  #listeningSince: number | undefined;

  constructor(selfId: string, periodMs = 1000) {
    this.#self = selfId;
    this.#periodMs = periodMs;
  }

  /** It hears the pool's presences from now on (and has asked its peers for theirs). */
  listening(): void {
    this.#listeningSince ??= monotonicNow();
  }

  /** A presence message of the pool (this worker's own and those without a plugin list are ignored). */
  saw(presence: PresenceBody): void {
    if (presence.id === this.#self || typeof presence.id !== 'string') return;
    if (presence.closing || presence.draining || !Array.isArray(presence.plugins)) {
      this.#peers.delete(presence.id);
      return;
    }
    const periodMs = Number.isFinite(presence.heartbeatMs) && presence.heartbeatMs > 0 ? presence.heartbeatMs : 1000;
    const now = monotonicNow();
    this.#peers.set(presence.id, { plugins: new Set(presence.plugins.filter((p) => typeof p === 'string')), seenAt: now, periodMs });
    // Peers that went silent (killed, their machine gone) are let go of here too, not only when a
    // task asks (`has`, a rare path): a long-lived worker kept one for every peer that ever crashed.
    if (now - this.#sweptAt >= SWEEP_EVERY_MS) {
      this.#sweptAt = now;
      for (const [id, peer] of this.#peers) if (isSilent(peer, now)) this.#peers.delete(id);
    }
  }

  /**
   * Whether a live peer has `pluginId` at `version`, or may have: a worker that began to listen
   * less than SILENT_PERIODS of its own presence period ago may not have heard every peer yet (the
   * answers to its presence query cross the network, as slowly as a peer's link): it takes none of
   * them for gone sooner than it would a peer it heard. (Before, a worker just started took the
   * tasks that its upgraded peers had handed back for a busy worker of the host's version, and
   * failed them as a version mismatch before that worker's presence reached it.)
   */
  has(pluginId: string, version: string): boolean {
    const wanted = pluginVersionKey(pluginId, version);
    const now = monotonicNow();
    for (const [id, peer] of this.#peers) {
      if (isSilent(peer, now)) this.#peers.delete(id);
      else if (peer.plugins.has(wanted)) return true;
    }
    return this.#listeningSince !== undefined && !isSilent({ seenAt: this.#listeningSince, periodMs: this.#periodMs }, now);
  }

  /** How many peers it knows of now (silent ones not yet let go of included). */
  get known(): number {
    return this.#peers.size;
  }
}

/** How often, at most, presences coming in let go of silent peers. */
const SWEEP_EVERY_MS = 1000;

function isSilent(peer: { seenAt: number; periodMs: number }, now: number): boolean {
  return now - peer.seenAt > SILENT_PERIODS * peer.periodMs;
}

/** How presence names a plugin version: `id@version`. */
export function pluginVersionKey(pluginId: string, version: string): string {
  return `${pluginId}@${version}`;
}
