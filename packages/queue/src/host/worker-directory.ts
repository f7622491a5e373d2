import type { IsolationReport } from '@kb-labs/plugin-execution-core';
import { recordRunnerStart } from '@kb-labs/plugin-execution-core/backend-kit';
import type { PresenceBody } from '../shared/wire.js';

/** What a host knows of the pool's workers, from their presence messages. */
export class WorkerDirectory {
  readonly #workers = new Map<string, { presence: PresenceBody; seen: number }>();
  readonly #lostMs: number;
  #firstSeen: (() => void) | undefined;
  readonly #first = new Promise<void>((resolve) => (this.#firstSeen = resolve));

  constructor(lostMs: number) {
    this.#lostMs = lostMs;
  }

  take(presence: PresenceBody): void {
    if (presence.closing) {
      this.#workers.delete(presence.id);
      return;
    }
    // A worker joining the pool, as this host sees it, is a runner start (telemetry).
    if (!this.#workers.has(presence.id)) recordRunnerStart('queue');
    this.#workers.set(presence.id, { presence, seen: performance.now() });
    this.#firstSeen?.();
  }

  /**
   * Workers heard from within the lost-worker window, newest state each; the window is at least
   * three of a worker's own presence intervals (a host more impatient than its workers still sees them).
   */
  alive(): PresenceBody[] {
    const now = performance.now();
    const out: PresenceBody[] = [];
    for (const [id, { presence, seen }] of this.#workers) {
      if (now - seen <= Math.max(this.#lostMs, 3 * (presence.heartbeatMs || 0))) out.push(presence);
      else this.#workers.delete(id);
    }
    return out;
  }

  /** Settles once a worker was heard from, or after `ms`. */
  async heardWithin(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#first, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
    clearTimeout(timer);
  }

  /** The isolation handlers get: the workers' local backend's, behind the network boundary. */
  isolation(pool: string): IsolationReport {
    const workers = this.alive();
    const actives = new Set(workers.map((w) => w.isolation?.active ?? 'unknown'));
    const first = workers[0]?.isolation;
    if (!first || actives.size !== 1) {
      return {
        requested: 'remote workers',
        active: 'unknown',
        layers: ['remote-worker'],
        reason: workers.length === 0 ? `no worker of pool "${pool}" has been seen yet` : `the workers of pool "${pool}" differ: ${[...actives].join(', ')}`,
      };
    }
    return {
      requested: 'remote workers',
      active: first.active as IsolationReport['active'],
      layers: ['remote-worker', ...first.layers],
      reason: `handlers run on workers of pool "${pool}" (${workers.length} seen), each on its local ${workers[0]!.backend} backend: ${first.reason}`,
    };
  }
}
