import type { IsolationReport } from '@kb-labs/plugin-execution-core';
import { clearTimeout, monotonicNow, recordRunnerCrash, recordRunnerStart, setTimeout, shownControls } from '@kb-labs/plugin-execution-core/backend-kit';
import type { PresenceBody, WorkerIdentity } from '../shared/wire.js';

/** How long a worker process's loss, counted, is remembered: its other executions fail with it (within a watch tick), not later. */
const LOSS_COUNTED_MS = 60_000;

/** How often, at most, presences coming in let go of silent workers. */
const SWEEP_EVERY_MS = 1000;

/** What a host knows of the pool's workers, from their presence messages. */
export class WorkerDirectory {
  readonly #workers = new Map<string, { presence: PresenceBody; seen: number }>();
  readonly #lostMs: number;
  /** Worker processes (workerKey) whose loss was counted (telemetry), and when. */
  readonly #lost = new Map<string, number>();
  /** When silent workers were last let go of as presences came in. */
  #sweptAt = 0;
  #firstSeen: (() => void) | undefined;
  readonly #first = new Promise<void>((resolve) => (this.#firstSeen = resolve));

  constructor(lostMs: number) {
    this.#lostMs = lostMs;
  }

  /**
   * When the worker process `worker` names last said it is there (`monotonicNow()`), if it did:
   * a process of the same id but another pid or machine (one restarted under a fixed id) is not it.
   */
  seenAt(worker: { id: string; host: string; pid: number }): number | undefined {
    const known = this.#workers.get(worker.id);
    return known && known.presence.pid === worker.pid && known.presence.host === worker.host ? known.seen : undefined;
  }

  take(presence: PresenceBody): void {
    if (presence.closing) {
      this.#workers.delete(presence.id);
      return;
    }
    // A worker joining the pool, as this host sees it, is a runner start (telemetry); so is one whose loss was counted, heard again.
    if (this.#lost.delete(workerKey(presence)) || !this.#workers.has(presence.id)) recordRunnerStart('queue');
    const now = monotonicNow();
    this.#workers.set(presence.id, { presence, seen: now });
    this.#firstSeen?.();
    // Workers gone silent (killed, their machine gone: no closing presence) are let go of here too,
    // not only when health() or stats() asks: a pool whose workers restart under new ids (the
    // default id names the process) kept one for every worker that ever died.
    if (now - this.#sweptAt >= SWEEP_EVERY_MS) {
      this.#sweptAt = now;
      this.#letGoOfSilent(now);
    }
  }

  /**
   * A runner died under an execution of `worker` (telemetry, docs/observability.md): a worker lost
   * (`runner-lost`) is one runner, counted once however many executions it ran; a runner of its
   * local backend (a child, a thread: `exit`, `oom` …) is one per execution.
   */
  crashed(worker: WorkerIdentity | undefined, reason: string | undefined): void {
    if (reason === 'runner-lost' && worker) {
      const now = monotonicNow();
      for (const [key, at] of this.#lost) if (now - at > LOSS_COUNTED_MS) this.#lost.delete(key);
      if (this.#lost.has(workerKey(worker))) return;
      this.#lost.set(workerKey(worker), now);
    }
    recordRunnerCrash('queue', reason);
  }

  /**
   * Workers heard from within the lost-worker window, newest state each; the window is at least
   * three of a worker's own presence intervals (a host more impatient than its workers still sees
   * them). Those silent past it are let go of.
   */
  alive(): PresenceBody[] {
    this.#letGoOfSilent(monotonicNow());
    return [...this.#workers.values()].map(({ presence }) => presence);
  }

  /** Forget the workers silent past their window at `now`: `lostMs`, or three of their own presence intervals if longer. */
  #letGoOfSilent(now: number): void {
    for (const [id, { presence, seen }] of this.#workers) if (now - seen > Math.max(this.#lostMs, 3 * (presence.heartbeatMs || 0))) this.#workers.delete(id);
  }

  /** Settles once a worker was heard from, or after `ms`. */
  async heardWithin(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#first, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
    clearTimeout(timer);
  }

  /**
   * The isolation handlers get: the workers' local backend's, behind the network boundary. Where
   * the workers differ, the weakest in force (a handler may land on any of them): `none` if one
   * runs handlers in its own thread, `unknown` if one does not say and none is `none`.
   */
  isolation(pool: string): IsolationReport {
    const workers = this.alive();
    if (workers.length === 0) return { requested: 'remote workers', active: 'unknown', layers: ['remote-worker'], reason: `no worker of pool "${pool}" is connected now` };
    const weakest = workers.reduce((a, b) => (strength(b) < strength(a) ? b : a));
    const active = activeOf(weakest);
    const layers = ['remote-worker', ...(weakest.isolation?.layers ?? [])];
    const actives = new Set(workers.map(activeOf));
    if (actives.size === 1) {
      return { requested: 'remote workers', active, layers, reason: `handlers run on workers of pool "${pool}" (${workers.length} seen), each on its local ${shown(weakest.backend)} backend: ${shown(weakest.isolation?.reason ?? 'it did not say')}` };
    }
    const byActive = [...actives].sort((a, b) => STRENGTH[a]! - STRENGTH[b]!).map((each) => `${each}: ${workers.filter((w) => activeOf(w) === each).map((w) => `${w.id} (${shown(w.backend)})`).join(', ')}`);
    return {
      requested: 'remote workers',
      active,
      layers,
      reason: `the workers of pool "${pool}" differ (${byActive.join('; ')}), and a handler may run on any of them: the weakest, ${active}, is what is in force`,
    };
  }
}

type Active = IsolationReport['active'];

/** One worker process: a restart under a fixed id is another. */
function workerKey(worker: WorkerIdentity): string {
  return `${worker.id}\n${worker.host}\n${worker.pid}`;
}

/** Weakest first: a worker that does not say ranks above `none` (it may be anything) and below every known boundary. */
const STRENGTH: Record<string, number> = { none: 0, unknown: 1, thread: 2, process: 3, bubblewrap: 4 };

function activeOf(worker: PresenceBody): Active {
  const active = worker.isolation?.active ?? 'unknown';
  return (active in STRENGTH ? active : 'unknown') as Active;
}

/** Text of a presence's, as health() quotes it: its control characters written out (a worker's text, read off the wire). */
const shown = (text: string): string => shownControls(text, '');

function strength(worker: PresenceBody): number {
  return STRENGTH[activeOf(worker)]!;
}
