import { runnerMessageProblem, type RunnerToHost } from '@kb-labs/plugin-execution-core/backend-kit';
import type { Msg } from '@nats-io/transport-node';
import { decode, encode, type ResultBody, type WorkerIdentity } from '../shared/wire.js';
import type { RemoteExecution } from './remote-execution.js';
import { resultProblem, startProblem } from './worker-bodies.js';

/**
 * A worker's message (`kind`, its body read whole) to the execution it is about: `execution` is
 * undefined where this host waits for no such execution, or has not accepted its start yet and
 * the message is not about starting. A start nobody waits for is refused.
 */
export function deliver(kind: string, execution: RemoteExecution | undefined, body: Uint8Array, msg: Msg, outputSent: string | undefined): void {
  switch (kind) {
    case 'started': {
      const start = decode<{ worker: WorkerIdentity; task?: unknown }>(body);
      const problem = execution && startProblem(start);
      if (!execution) msg.respond(encode({ accept: false, reason: 'no caller waits for this execution' }, 'reply'));
      else if (problem === undefined) execution.started(start, msg);
      else {
        msg.respond(encode({ accept: false, reason: `its start is not of the shape workers send: ${problem}` }, 'reply'));
        // Not started by another worker: it fails now, saying why, not at its time limit (a worker of another version would send each such start).
        if (!execution.accepted) execution.malformed('start', problem);
      }
      return;
    }
    case 'withdrawn':
      execution?.withdrawn(decode<{ worker: WorkerIdentity }>(body).worker.id);
      break;
    case 'input-wanted':
      execution?.inputWanted(decode<{ worker: WorkerIdentity }>(body).worker.id);
      break;
    case 'input-taken':
      execution?.inputTaken(decode<{ worker: WorkerIdentity }>(body).worker.id);
      break;
    case 'log':
      execution?.log(decode(body, "A log line of the handler's", 'by the host'));
      break;
    case 'event':
    case 'rpc': {
      const message = decode<RunnerToHost | null>(body, kind === 'rpc' ? "A platform or channel call of the handler's" : "An event of the handler's", 'by the host');
      // Only the message its kind carries: a { type: 'result' } closed the execution's session (its handler's calls went unanswered), a { type: 'log' } passed the log line's check by.
      // And of the shape runners send, as a child's or a thread's is (a call with an id that is no integer, an unknown target or no argument list was made).
      const problem = message?.type === kind ? runnerMessageProblem(message) : undefined;
      if (message?.type === kind && problem === undefined) execution?.relay(message);
      else execution?.malformed(kind === 'rpc' ? 'platform or channel call' : 'event', problem);
      break;
    }
    case 'result': {
      const result = decode<ResultBody>(body, "The handler's result", 'by the host');
      const problem = execution && resultProblem(result);
      if (problem === undefined) execution?.result(result, outputSent);
      else execution?.malformed('result', problem);
      break;
    }
  }
  // The last part of a large message is a request: the sender waits for this.
  if (msg.reply) msg.respond();
}

/**
 * A heartbeat's executions, each once, as workers list them: one listed 30,000 times (a peer with a
 * worker's id) had the host send a stopped execution's cancel 30,000 times, and count as many beats.
 */
export function namedOnce(executions: string[]): string[] {
  return Array.isArray(executions) ? [...new Set(executions)] : executions;
}
