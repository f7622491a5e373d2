import { AbortedError } from '@kb-labs/plugin-execution-core';
import { clearInterval, LiveMap, monotonicNow, setInterval, settlesWithin, wallClockMs } from '@kb-labs/plugin-execution-core/backend-kit';
import type { Courier } from '../shared/courier.js';
import { decode, encode } from '../shared/wire.js';

/** What the watch needs of a running execution. */
export interface Watched {
  readonly id: string;
  /** Stop it on this worker: its caller no longer waits for it. */
  orphan(reason: AbortedError): void;
  /** It has ended: the worker's connection (Courier.connection) its result went on, as one message, not confirmed yet. */
  readonly resultSentOn?: number | undefined;
  /** Its caller does not have its result: send it again (false: given up). */
  resendResult?(): boolean;
}

/** The fastest heartbeat pace an impatient caller gets. */
const MIN_INTERVAL_MS = 25;

/** How long a task waits for an execution of its id whose caller is gone to stop here (freed), before it is refused as a duplicate. */
const ID_FREED_WITHIN_MS = 5000;

/** Heartbeat requests to one caller that may be unanswered at once (a slow link: answers come a round trip late). */
const MAX_ASKING = 3;

interface Caller {
  executions: LiveMap<Watched>;
  lostMs: number;
  /** When the caller last said anything to this worker: a heartbeat's answer, a part's, a message. */
  lastAnswer: number;
  /**
   * When this worker sent the latest heartbeat (or accepted start) the caller answered: the
   * caller heard from it no earlier, so it waits at least its `workerLostMs` from then. Not when
   * the answer was read, which after a stop (SIGSTOP) may be long after the caller wrote it off.
   */
  provenAt: number;
  /** Heartbeat requests not answered yet. */
  asking: number;
}

/**
 * Heartbeats, one request per calling host and interval, naming the executions this worker runs
 * for it. The answer names those it no longer waits for; "no responders" means the host is gone;
 * no answer for the host's `workerLostMs` means it has given up on them (it reported them lost):
 * each of those is stopped here, so that no orphan runs on and no late result matters.
 *
 * The pace is the worker's `heartbeatMs`, or faster while a caller whose `workerLostMs` (sent
 * with each task) is shorter waits: three beats per that window, so that a host more impatient
 * than its workers does not take them for lost.
 */
export class CallerWatch {
  readonly #callers = new LiveMap<Caller>();
  /** Executions stopped here because their caller no longer waits for them (freed). */
  readonly #orphaned = new WeakSet<Watched>();
  readonly #courier: Courier;
  readonly #workerId: string;
  readonly #heartbeatMs: number;
  #timer: NodeJS.Timeout;
  #intervalMs: number;
  #closed = false;
  #lastBeat = monotonicNow();

  constructor(courier: Courier, workerId: string, heartbeatMs: number) {
    this.#courier = courier;
    this.#workerId = workerId;
    this.#heartbeatMs = heartbeatMs;
    this.#intervalMs = heartbeatMs;
    this.#timer = setInterval(() => this.#beat(), heartbeatMs);
  }

  /** `execution`, whose start this worker asked `caller` for at `askedAt` and which it accepted (an answer: the caller is there). */
  add(caller: string, lostMs: number, execution: Watched, askedAt: number): void {
    let entry = this.#callers.get(caller);
    if (!entry) {
      this.#callers.set(caller, (entry = { executions: new LiveMap(), lostMs, lastAnswer: monotonicNow(), provenAt: askedAt, asking: 0 }));
      this.#pace();
    }
    entry.lastAnswer = monotonicNow();
    entry.provenAt = Math.max(entry.provenAt, askedAt);
    entry.executions.set(execution.id, execution);
  }

  /** The execution of `sent` has ended, its result sent as one message: watched on as that alone, until its caller has it. */
  ended(caller: string, sent: Watched): void {
    const entry = this.#callers.get(caller);
    if (entry?.executions.has(sent.id)) entry.executions.set(sent.id, sent);
  }

  delete(caller: string, executionId: string): void {
    const entry = this.#callers.get(caller);
    if (!entry) return;
    entry.executions.delete(executionId);
    if (entry.executions.size > 0) return;
    this.#callers.delete(caller);
    this.#pace();
  }

  /** `caller` said something (a reply to a part, a cancel, a call's reply): it is there. */
  heard(caller: string): void {
    const entry = this.#callers.get(caller);
    if (entry) entry.lastAnswer = monotonicNow();
  }

  /** A heartbeat to `caller` now, not at the next beat (a start whose accept came back late). */
  beatNow(caller: string): void {
    const entry = this.#callers.get(caller);
    if (entry && entry.asking < MAX_ASKING && !this.#closed) void this.#ask(caller, entry);
  }

  /** Whether `caller` still answered within its lost window (checked before a late start). */
  answering(caller: string): boolean {
    const entry = this.#callers.get(caller);
    return !entry || monotonicNow() - entry.lastAnswer <= entry.lostMs;
  }

  /**
   * Until when (wallClockMs) a handler of `caller`'s may begin here: its caller waits at least its
   * `workerLostMs` from the latest heartbeat it answered. A worker stopped (SIGSTOP) past that
   * reads, when it resumes, what came meanwhile before its timers run: this is not left to them.
   */
  beginBy(caller: string): number {
    const entry = this.#callers.get(caller);
    return entry ? wallClockMs() + (entry.provenAt + entry.lostMs - monotonicNow()) : Number.NEGATIVE_INFINITY;
  }

  /**
   * Whether the id of `other`, an execution running here, is free for another host's task: its
   * caller, asked now (not at the next beat), no longer waits for it (a host that died, restarted
   * and retried the id at once), so it was stopped here, and it is over within ID_FREED_WITHIN_MS.
   * One its caller still waits for, or has not accepted yet (two hosts sent the id at once), keeps it.
   */
  async freed(other: Watched & { claim: { caller: string }; handlerOver: Promise<void> }): Promise<boolean> {
    const entry = this.#callers.get(other.claim.caller);
    if (entry?.executions.get(other.id) === other && !this.#closed) await this.#ask(other.claim.caller, entry);
    return this.#orphaned.has(other) && (await settlesWithin(other.handlerOver, ID_FREED_WITHIN_MS));
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
  }

  /** Beat every heartbeatMs, or three times per the shortest lost window of a caller now waiting. */
  #pace(): void {
    if (this.#closed) return;
    let wanted = this.#heartbeatMs;
    for (const entry of this.#callers.values()) wanted = Math.min(wanted, Math.max(MIN_INTERVAL_MS, Math.floor(entry.lostMs / 3)));
    if (wanted === this.#intervalMs) return;
    this.#intervalMs = wanted;
    clearInterval(this.#timer);
    this.#timer = setInterval(() => this.#beat(), wanted);
  }

  #beat(): void {
    const now = monotonicNow();
    // This process was busy (or stopped) past a beat: answers may be waiting in its socket.
    const late = now - this.#lastBeat > 2 * this.#intervalMs;
    this.#lastBeat = now;
    for (const [caller, entry] of this.#callers) {
      if (!late && now - entry.lastAnswer > entry.lostMs) {
        this.#orphan(caller, entry, [...entry.executions.keys()], `its caller has not answered heartbeats for ${Math.round(now - entry.lastAnswer)} ms (the caller is gone, or this worker's own link to the NATS server is cut)`);
        continue;
      }
      // Not one at a time: on a link with a round trip longer than a beat, answers still come every beat.
      if (entry.asking < MAX_ASKING) void this.#ask(caller, entry);
    }
  }

  async #ask(caller: string, entry: Caller): Promise<void> {
    entry.asking++;
    const askedAt = monotonicNow();
    try {
      // Waits as long as the caller waits for this worker: a slow answer is still an answer.
      // Ended before this heartbeat: a result that went on this connection reached the caller
      // before the heartbeat does; one that went on a connection that dropped since is asked about.
      const connection = this.#courier.connection;
      const all = [...entry.executions.values()];
      const ended = all.filter((execution) => execution.resultSentOn !== undefined);
      const asked = all.filter((execution) => execution.resultSentOn === undefined || execution.resultSentOn < connection).map((execution) => execution.id);
      const reply = await this.#courier.request(caller, 'heartbeat', undefined, encode({ worker: this.#workerId, executions: asked }, 'heartbeat'), entry.lostMs);
      entry.lastAnswer = monotonicNow();
      entry.provenAt = Math.max(entry.provenAt, askedAt);
      const { unknown } = decode<{ unknown: string[] }>(reply.data);
      for (const execution of ended) {
        const received = execution.resultSentOn === connection || unknown.includes(execution.id);
        if (received || !execution.resendResult?.()) this.delete(caller, execution.id);
      }
      this.#orphan(caller, entry, unknown, 'its caller no longer waits for it');
    } catch (error) {
      const noResponders = (error as { isNoResponders?: () => boolean })?.isNoResponders?.() === true;
      if (noResponders) this.#orphan(caller, entry, [...entry.executions.keys()], 'its calling host is gone');
    } finally {
      entry.asking--;
    }
  }

  #orphan(caller: string, entry: Caller, ids: string[], why: string): void {
    for (const id of ids) {
      const execution = entry.executions.get(id);
      if (!execution) continue;
      entry.executions.delete(id);
      if (execution.resultSentOn !== undefined) continue;
      this.#orphaned.add(execution);
      execution.orphan(new AbortedError(`Execution ${id} stopped on worker ${this.#workerId}: ${why}`, { details: { phase: 'running' } }));
    }
    // Nothing left of that caller's: not watched on (a host that called once and exited was kept, and asked, for ever).
    if (entry.executions.size > 0 || this.#callers.get(caller) !== entry) return;
    this.#callers.delete(caller);
    this.#pace();
  }
}
