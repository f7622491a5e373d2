import { isExecutionError } from '@kb-labs/plugin-execution-core';
import { CRASHING_ACTS, DOCUMENTED_CODES, SUCCEEDING_ACTS, type ExecuteRecord, type FuzzRun } from './fuzz-record.js';

/** Every invariant a fuzz run broke, one line each; empty when it kept them all. */
export function fuzzRunProblems(run: FuzzRun): string[] {
  const problems: string[] = [];
  for (const record of run.executions) problems.push(...executionProblems(run, record).map((p) => `${record.tag} (${record.act}, ${record.pluginId}): ${p}`));
  if (run.unsettledAtShutdown?.length) problems.push(`not settled when shutdown() resolved: ${run.unsettledAtShutdown.join(', ')}`);
  if (run.secondShutdownDiffered) problems.push('a second shutdown() returned another promise');
  problems.push(...snapshotProblems(run), ...changeProblems(run), ...tallyProblems(run));
  return problems;
}

function executionProblems(run: FuzzRun, record: ExecuteRecord): string[] {
  if (record.settleCount !== 1) return [`settled ${record.settleCount} times`];
  if (record.rejection !== undefined) return [`execute() rejected: ${String(record.rejection)}`];
  const result = record.result!;
  const hits = run.hits.get(record.tag) ?? 0;
  const problems: string[] = [...callbackProblems(record), ...metaProblems(run, record)];
  if (hits > 1) problems.push(`its handler began ${hits} times`);
  if (record.abortedBeforeCall && (hits > 0 || record.starts.length > 0)) problems.push('ran, though its signal was aborted before the call');
  if (result.ok) {
    if (!SUCCEEDING_ACTS.has(record.act)) problems.push('succeeded, for an act that never succeeds');
    if (record.registeredAtCall === 'no' && !record.changedWhileLoading) problems.push('succeeded, for a plugin not registered when it was called');
    if ((result.data as { tag?: unknown })?.tag !== record.tag) problems.push(`succeeded with another's data: ${JSON.stringify(result.data)}`);
    if (hits !== 1) problems.push(`succeeded, its handler began ${hits} times`);
    return problems;
  }
  const { error } = result;
  if (!isExecutionError(error)) problems.push(`error is not an ExecutionError: ${String(error)}`);
  if (!DOCUMENTED_CODES.has(error.code)) problems.push(`undocumented code ${error.code}`);
  const why = codeFits(run, record, error.code);
  if (why) problems.push(`${error.code} (${error.message}): ${why}`);
  if ((error.code === 'HANDLER_NOT_FOUND' || error.code === 'QUEUE_FULL') && hits > 0) problems.push(`${error.code}, yet its handler began`);
  return problems;
}

/** Only one onStart, none for an execution that never started; no callback after the result. */
function callbackProblems(record: ExecuteRecord): string[] {
  const problems: string[] = [];
  const settledAt = record.settledAt!;
  if (record.starts.length > 1) problems.push(`onStart called ${record.starts.length} times`);
  const code = record.result!.ok ? 'ok' : record.result!.error.code;
  if (record.starts.length > 0 && (code === 'HANDLER_NOT_FOUND' || code === 'QUEUE_FULL')) problems.push(`onStart called, yet ${code}`);
  const phase = record.result!.ok ? undefined : (record.result!.error.details as { phase?: string } | undefined)?.phase;
  if (record.starts.length > 0 && phase === 'queued') problems.push(`onStart called, yet ${code} says it never started (phase 'queued')`);
  const late = [...record.starts, ...record.logs, ...record.events].filter((at) => at > settledAt);
  if (late.length > 0) problems.push(`${late.length} callback(s) after its result`);
  return problems;
}

/** SLACK: the bound for "does not hang" after an abort or past a time limit. */
const SLACK_MS = 3000;

/** `meta` names this execution, and it ended in bounded time after its abort or time limit. */
function metaProblems(run: FuzzRun, record: ExecuteRecord): string[] {
  const result = record.result!;
  const problems: string[] = [];
  if (result.meta.pluginId !== record.pluginId || result.meta.handlerId !== 'act') problems.push(`meta names ${result.meta.pluginId}/${result.meta.handlerId}`);
  if (record.abortedAt !== undefined && record.settledAt! - record.abortedAt > SLACK_MS) problems.push(`settled ${Math.round(record.settledAt! - record.abortedAt)} ms after its abort`);
  if (record.timeoutMs !== undefined && result.meta.runMs > record.timeoutMs + SLACK_MS) problems.push(`ran ${Math.round(result.meta.runMs)} ms with a ${record.timeoutMs} ms limit`);
  if (result.ok && record.act === 'write' && !result.meta.artifacts.includes(`${record.tag}.txt`)) problems.push(`artifacts ${JSON.stringify(result.meta.artifacts)} miss what it wrote`);
  if (result.ok && record.act === 'log' && (record.logs.length < 20 || record.events.length !== 1)) problems.push(`${record.logs.length} log lines, ${record.events.length} events`);
  return problems;
}

/** Why `code` does not fit what the driver did to this execution, or undefined when it does. */
function codeFits(run: FuzzRun, record: ExecuteRecord, code: string): string | undefined {
  const settledAt = record.settledAt!;
  const shutdownBegun = run.shutdownCalledAt !== undefined && run.shutdownCalledAt <= settledAt;
  switch (code) {
    case 'ABORTED':
      return record.abortedAt !== undefined && record.abortedAt <= settledAt ? undefined : 'its signal was never aborted';
    case 'SHUTTING_DOWN':
      return shutdownBegun ? undefined : 'shutdown() was not called before it settled';
    case 'TIMEOUT':
      return record.timeoutMs !== undefined || shutdownBegun ? undefined : 'no time limit was given and no shutdown stopped it';
    case 'HANDLER_ERROR':
      return record.act === 'throw' ? undefined : 'its handler did not throw';
    case 'WORKER_CRASHED':
      return CRASHING_ACTS.has(record.act) ? undefined : 'its handler did not end its runner';
    case 'HANDLER_NOT_FOUND':
      return record.registeredAtCall === 'yes' && !record.changedWhileLoading ? 'its plugin was registered when it was called' : undefined;
    case 'QUEUE_FULL':
      return undefined;
    default:
      return 'nothing the driver did calls for it';
  }
}

function snapshotProblems(run: FuzzRun): string[] {
  const problems: string[] = [];
  for (const [index, { stats, health, error }] of run.snapshots.entries()) {
    const at = `snapshot ${index}`;
    if (error !== undefined) problems.push(`${at}: rejected: ${String(error)}`);
    if (stats) {
      if (stats.active < 0 || stats.queued < 0) problems.push(`${at}: stats active ${stats.active}, queued ${stats.queued}`);
      const sum = Object.values(stats.byOutcome).reduce((a, b) => a + (b ?? 0), 0);
      if (sum !== stats.total) problems.push(`${at}: stats byOutcome sums to ${sum}, total ${stats.total}`);
      if (stats.active > stats.concurrency) problems.push(`${at}: stats active ${stats.active} over concurrency ${stats.concurrency}`);
      problems.push(...runnerProblems(stats.runners).map((p) => `${at}: ${p}`));
    }
    if (health) {
      if (health.active < 0 || health.queued < 0) problems.push(`${at}: health active ${health.active}, queued ${health.queued}`);
      if (health.ok && health.problems.length > 0) problems.push(`${at}: health ok with problems ${JSON.stringify(health.problems)}`);
      if (!health.ok && health.problems.length === 0 && health.state === 'ready') problems.push(`${at}: health not ok, ready, no problem named`);
    }
  }
  return problems;
}

/** A plugin change may be refused only for a plugin not registered (reload) or once shutdown began. */
function changeProblems(run: FuzzRun): string[] {
  return run.changeErrors
    .filter(({ op, error }) => {
      const code = (error as { code?: unknown })?.code;
      if (code === 'SHUTTING_DOWN') return false;
      return !(op.startsWith('reload') && code === 'HANDLER_NOT_FOUND');
    })
    .map(({ op, error }) => `${op} rejected: ${(error as Error)?.message ?? String(error)}`);
}

/** Once every execution settled: stats() counts each exactly once, by its outcome, none active. */
function tallyProblems(run: FuzzRun): string[] {
  const stats = run.finalStats;
  if (!stats) return ['no final stats()'];
  const problems: string[] = [];
  const counted: Record<string, number> = { ok: 0 };
  for (const { result } of run.executions) if (result) counted[result.ok ? 'ok' : result.error.code] = (counted[result.ok ? 'ok' : result.error.code] ?? 0) + 1;
  if (stats.active !== 0 || stats.queued !== 0) problems.push(`final stats active ${stats.active}, queued ${stats.queued}`);
  if (stats.total !== run.executions.length) problems.push(`final stats total ${stats.total}, ${run.executions.length} executions settled`);
  if (JSON.stringify(sorted(stats.byOutcome)) !== JSON.stringify(sorted(counted))) problems.push(`final stats byOutcome ${JSON.stringify(sorted(stats.byOutcome))}, results ${JSON.stringify(sorted(counted))}`);
  if (stats.state !== 'closed') problems.push(`final stats state ${stats.state}`);
  const runners = stats.runners as { threads?: number; live?: number } | undefined;
  if (runners?.threads || runners?.live) problems.push(`final stats runners: ${runners.threads ?? runners.live} left`);
  const health = run.finalHealth;
  if (health && (health.state !== 'closed' || health.active !== 0 || health.queued !== 0)) problems.push(`final health ${health.state}, active ${health.active}, queued ${health.queued}`);
  return problems;
}

function sorted(counts: Record<string, number | undefined>): Array<[string, number | undefined]> {
  return Object.entries(counts).sort(([a], [b]) => a.localeCompare(b));
}

/** The backend's own figures (worker-pool's threads, subprocess's children) within their bounds. */
function runnerProblems(runners: Record<string, unknown> | undefined): string[] {
  const problems: string[] = [];
  const { threads, busy, maxThreads, live, running } = (runners ?? {}) as Record<string, number | undefined>;
  if (threads !== undefined && maxThreads !== undefined && threads > maxThreads) problems.push(`runners: ${threads} threads, maxThreads ${maxThreads}`);
  if (threads !== undefined && busy !== undefined && busy > threads) problems.push(`runners: ${busy} busy of ${threads} threads`);
  if (live !== undefined && running !== undefined && running > live) problems.push(`runners: ${running} running of ${live} children`);
  return problems;
}
