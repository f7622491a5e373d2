import type { ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { clearTimeout, HostSession, monotonicNow, OutputPacer, PROTOCOL_VERSION, refuseWhatCloneRefuses, serializeErrorForRunner, setTimeout, settlesWithin, unreadableMessageError, unwrapRunnerResult, type DispatchControl, type RunnerResult, type RunnerToHost } from '@kb-labs/plugin-execution-core/backend-kit';
import { bwrapSetupFailure, crashError, spawnRefusal, type ChildEnd } from './crash.js';
import { spawnLaunch } from './child-spawn.js';
import { killAtExit, signalChildGroup } from './process-group.js';
import { FramedChannel, UnreadableFrame, type ProtocolError } from '../framing.js';
import { EXIT_CHANNEL_CLOSED, type ChildCrashMessage, type ChildStoppedItselfMessage } from '../messages.js';
import { answerInItsOwnRight, childMessageProblem } from './child-message.js';
import { OutputCapture } from './output-capture.js';
import { SandboxStatus, signalOfExitCode } from './sandbox-status.js';
import type { Launch, SandboxUser } from './sandbox.js';

export interface ChildRunnerOptions {
  /** The command line: Node with its flags and the entry script, or bubblewrap around them. */
  launch: Launch;
  /** Host-side working directory of the spawned command (a sandboxed child gets its own with --chdir). */
  cwd: string;
  env: Record<string, string>;
  maxFrameBytes: number;
  handshakeTimeoutMs: number;
  cancelGraceMs: number;
  killGraceMs: number;
  maxLogLineLength: number;
  maxOutputPerStream: number;
  memoryMb: number | undefined;
  /** A warm spare: its handles do not keep the host's event loop alive while it waits. */
  spare: boolean;
}

/** How long to wait, after the child is gone, for its pipes to deliver their last bytes. */
const DRAIN_MS = 500;
const STDERR_TAIL = 8 * 1024;

/**
 * The host's side of one child process, from spawn to exit. A child serves at most one
 * execution. Everything it sends is checked before use (child-message.ts); if it breaks the
 * protocol, stalls before its handshake or dies, the run fails with WORKER_CRASHED and the
 * host carries on. A run settles only once no process of the child's group can run another
 * instruction: after its result (and SIGKILL to the group), or after its exit.
 */
export class ChildRunner {
  readonly pid: number | undefined;
  /** The unprivileged user it runs as, when sandboxed on a root host. */
  readonly user: SandboxUser | undefined;
  /** True once the child said it is ready; false if it ended first. */
  readonly ready: Promise<boolean>;
  /** Settles when the child has exited and its pipes are drained. */
  readonly ended: Promise<ChildEnd>;

  readonly #options: ChildRunnerOptions;
  readonly #child: ChildProcess;
  readonly #channel: FramedChannel;
  readonly #stdout: OutputCapture;
  readonly #stderr: OutputCapture;
  /** What bubblewrap reports on its status descriptor, when sandboxed. */
  readonly #sandbox: SandboxStatus | undefined;
  #resolveReady!: (ready: boolean) => void;
  #resolveEnded!: (end: ChildEnd) => void;
  #handshaken = false;
  #handshakeError: string | undefined;
  #protocolError: string | undefined;
  /** What the child said of the error that is ending it (its last words), if it said. */
  #crash: ChildCrashMessage | undefined;
  /** It stopped its handler at its time limit itself (its host held up): this host's own stop decides the result. */
  #stoppedItself = false;
  #spawnError: Error | undefined;
  #handshakeTimer: NodeJS.Timeout | undefined;
  #stopTimers: NodeJS.Timeout[] = [];
  #channelClosedTimer: NodeJS.Timeout | undefined;
  #session: HostSession | undefined;
  #control: DispatchControl | undefined;
  readonly #readPace: OutputPacer;
  readonly #forgetAtExit: () => void;
  #subject: { pluginId: string; handlerId: string } | undefined;
  /** When its time limit is past (monotonicNow): a child stops itself no sooner (stopped-itself). */
  #limitPastAt = 0;
  #result: RunnerResult | undefined;
  /** A message it sent could not be read here (UnreadableFrame): the execution's answer. */
  #unreadable: Error | undefined;
  #stopReason: unknown;
  #stopped = false;
  #exited = false;
  #finished = false;
  #settle: { resolve: (value: unknown) => void; reject: (error: unknown) => void } | undefined;
  #end: ChildEnd | undefined;
  #lineSink: ((stream: 'stdout' | 'stderr', line: string) => void) | undefined;
  readonly #pipesClosed: Promise<unknown>;
  /** stdout and stderr have both ended. */
  readonly #outputClosed: Promise<unknown>;

  constructor(options: ChildRunnerOptions) {
    this.#options = options;
    this.ready = new Promise((resolve) => (this.#resolveReady = resolve));
    this.ended = new Promise((resolve) => (this.#resolveEnded = resolve));
    const { launch } = options;
    const child = spawnLaunch(launch, options.cwd, options.env);
    this.#child = child;
    this.pid = child.pid;
    this.user = launch.user;
    this.#sandbox = launch.sandboxed ? new SandboxStatus(child.stdio[4] as Socket) : undefined;
    const closed = (stream: NodeJS.EventEmitter | null | undefined) => (stream ? new Promise((resolve) => stream.once('close', resolve)) : Promise.resolve());
    this.#outputClosed = Promise.all([closed(child.stdout), closed(child.stderr)]);
    this.#pipesClosed = Promise.all([this.#outputClosed, closed(child.stdio[3] as Socket | null), closed(child.stdio[4] as Socket | null)]);
    const capture = (stream: 'stdout' | 'stderr') => ({
      maxLogLineLength: options.maxLogLineLength,
      maxOutputPerStream: options.maxOutputPerStream,
      tailChars: STDERR_TAIL,
      onLine: (line: string) => this.#lineSink?.(stream, line),
    });
    this.#stdout = new OutputCapture(child.stdout!, capture('stdout'));
    this.#stderr = new OutputCapture(child.stderr!, capture('stderr'));
    // Its pipes read no further while whoever takes its output is behind: its synchronous writes then wait.
    const pipes = [child.stdio[3] as Socket | null, child.stdout, child.stderr];
    this.#readPace = new OutputPacer(() => pipes.forEach((pipe) => pipe?.pause()), () => pipes.forEach((pipe) => pipe?.resume()));
    this.#channel = new FramedChannel(child.stdio[3] as Socket, {
      maxFrameBytes: options.maxFrameBytes,
      onMessage: (message) => this.#onMessage(message),
      onProtocolError: (error: ProtocolError) => this.#violate(error.message),
      onClose: () => this.#onChannelClosed(),
    });
    child.on('error', (error) => {
      // Spawn failures (bad cwd, missing executable) arrive here, possibly without an 'exit'.
      this.#spawnError ??= error;
      if (child.pid === undefined) void this.#onExit(null, null);
    });
    child.on('exit', (code, signal) => void this.#onExit(code, signal));
    this.#forgetAtExit = killAtExit(() => signalChildGroup(this.#child, this.#sandbox, 'SIGKILL', true));
    this.#handshakeTimer = setTimeout(() => {
      if (this.#handshaken) return;
      this.#handshakeError = `no ready message within ${options.handshakeTimeoutMs} ms`;
      this.#killGroup('SIGKILL');
    }, options.handshakeTimeoutMs);
    if (options.spare) this.#setRef(false);
  }

  get handshaken(): boolean {
    return this.#handshaken;
  }

  /** True while it waits, booted or booting, for its one execution. */
  get available(): boolean {
    return !this.#exited && !this.#session && !this.#stopped && !this.#protocolError && !this.#handshakeError;
  }

  get running(): boolean {
    return this.#session !== undefined && !this.#finished;
  }

  /** A spare taken for an execution: from now on it keeps the host's event loop alive like any running child. */
  claim(): void {
    if (this.#options.spare) this.#setRef(true);
  }

  /**
   * Run one execution on this child: send the pre-encoded `run` frame, serve its logs, events
   * and platform calls, and settle with the handler's data (once it is in and the group has
   * been sent SIGKILL) or an ExecutionError (once the child is gone). `control.onStop` stops
   * it: cancel message, then SIGTERM, then SIGKILL.
   */
  run(runFrame: Buffer, subject: { pluginId: string; handlerId: string; timeoutMs: number }, control: DispatchControl): Promise<unknown> {
    if (this.#session) return Promise.reject(new Error('ChildRunner serves one execution only'));
    this.#subject = subject;
    this.#limitPastAt = monotonicNow() + subject.timeoutMs;
    this.#session = new HostSession(control, (message) => {
      refuseWhatCloneRefuses(message);
      this.#channel.send(message);
    });
    this.claim();
    this.#control = control;
    this.#lineSink = (stream, line) => {
      control.log(stream === 'stdout' ? 'info' : 'error', line, undefined, stream);
      this.#readPace.after(control);
    };
    const done = new Promise<unknown>((resolve, reject) => (this.#settle = { resolve, reject }));
    // A stop (timeout, abort, shutdown) reaches this child through the control's one way.
    const unsubscribe = control.onStop((reason) => this.stop(reason));
    void done.finally(unsubscribe).catch(() => {});
    if (this.#finished) this.#settleRun();
    else this.#channel.sendFrame(runFrame);
    return done;
  }

  /** Stop the execution: `cancel` (ctx.signal fires in the child), after `cancelGraceMs` (for an abort; none for a timeout or shutdown) SIGTERM to the whole group, after `killGraceMs` more SIGKILL. One that finishes meanwhile is discarded as usual. */
  stop(reason: unknown): void {
    if (this.#stopped || (this.#finished && !this.#stoppedItself)) return;
    this.#stopped = true;
    this.#stopReason = reason;
    // Gone after it stopped itself at its time limit: its end waited for this stop (#settleRun).
    if (this.#finished) return this.#settleRun();
    if (this.#result) return;
    if (this.#session) {
      // What the child wrote before the stop is the execution's, a last line without its newline
      // included; what it writes after is not delivered.
      this.#finishOutput();
      try {
        this.#channel.send({ type: 'cancel', reason: serializeErrorForRunner(reason, 'the host') });
      } catch {
        // The pipe is gone: the signals below do the job.
      }
    }
    // Its output reaches no one now (its last half line, just delivered, was the last): read on, so that its answer to the cancel is read.
    this.#readPace.release();
    const { cancelGraceMs, killGraceMs } = this.#options;
    const term = () => {
      this.#killGroup('SIGTERM');
      this.#stopTimers.push(setTimeout(() => this.#killGroup('SIGKILL'), killGraceMs));
    };
    // The rule of every backend: only the caller's abort gets `cancelGraceMs` to react to
    // ctx.signal (write a partial result, clean up). A timed-out handler has had its time, and so
    // has one cut by shutdown (which first waited its own timeout): SIGTERM at once.
    // Within the execution's own time limit: an abort does not lengthen it.
    const aborted = (reason as { code?: unknown } | null)?.code === 'ABORTED';
    const graceMs = aborted && this.#control ? this.#control.abortGraceMs(cancelGraceMs) : 0;
    if (this.#session && this.#handshaken && graceMs > 0) this.#stopTimers.push(setTimeout(term, graceMs));
    else term();
  }

  /** Kill at once (spares on shutdown, leftovers). */
  kill(): void {
    this.#stopped = true;
    // Whoever kills it waits for `ended`: an unref'd spare would let the loop exit first.
    if (!this.#exited) this.#setRef(true);
    this.#killGroup('SIGKILL');
  }

  #onMessage(raw: unknown): void {
    if (this.#protocolError) return;
    if (raw instanceof UnreadableFrame) return this.#unreadableFrame(raw);
    const problem = childMessageProblem(raw);
    if (problem) return this.#violate(problem);
    const message = raw as RunnerToHost | ChildCrashMessage | ChildStoppedItselfMessage;
    if (!this.#handshaken) {
      if (message.type !== 'ready') return this.#violate(`expected a ready message first, got ${message.type}`);
      if (message.version !== PROTOCOL_VERSION) {
        this.#handshakeError = `it speaks protocol version ${message.version}, the host speaks ${PROTOCOL_VERSION}`;
        this.#killGroup('SIGKILL');
        return;
      }
      this.#handshaken = true;
      clearTimeout(this.#handshakeTimer);
      this.#resolveReady(true);
      return;
    }
    if (message.type === 'ready') return this.#violate('a second ready message');
    // Anything after the result (or a frame it could not read: the execution fails with that) is from a discarded child: ignored.
    if (this.#result || this.#finished || this.#unreadable) return;
    if (!this.#session) return this.#violate(`a ${message.type} message before it was given an execution`);
    if (message.type === 'crash') {
      this.#crash ??= message;
      return;
    }
    // A stop at its own limit is said by the runtime past that limit only: sooner, the handler forged it (fd 3) to be waited for.
    if (message.type === 'stopped-itself' && monotonicNow() < this.#limitPastAt) return this.#violate('a stopped-itself message before its time limit');
    if (message.type === 'stopped-itself') return void (this.#stoppedItself = true);
    const result = this.#session.handle(message);
    if (!result) this.#readPace.after(this.#control!);
    if (result) {
      this.#result = result;
      if (answerInItsOwnRight(result)) this.#control?.answered();
      this.#session.close();
      // The execution is over; the child (and anything it started) is discarded at once.
      this.#killGroup('SIGKILL');
      // Settle once stdout and stderr have reached their end (the kill closes them within a
      // few ms): the child flushed both before it sent the result, but on a loaded machine
      // those bytes can be read after the result frame, and lines read after the result would
      // be lost. Bounded, because a grandchild that left the group could hold a pipe open.
      void settlesWithin(this.#outputClosed, DRAIN_MS).then(() => this.#settleRun());
    }
  }

  /** A frame it sent is too deep to rebuild here; it may have been the answer: VALIDATION_ERROR (as a thread's), the child discarded. */
  #unreadableFrame(frame: UnreadableFrame): void {
    if (!this.#handshaken || !this.#session) return this.#violate(`an unreadable frame (${frame.error.message})`);
    if (this.#result || this.#finished || this.#unreadable) return;
    this.#unreadable = unreadableMessageError('A message the handler sent (its result, an event, a log line or a call)', 'by the host', frame.error);
    this.#session.close();
    this.#killGroup('SIGKILL');
  }

  /**
   * Its end of the channel is closed: a child exiting closes it first; one still running a moment
   * later closed it itself (fd 3), and is killed now (nothing it does can reach the host any more).
   */
  #onChannelClosed(): void {
    if (this.#exited || this.#result || this.#protocolError) return;
    this.#channelClosedTimer = setTimeout(() => {
      if (!this.#exited && !this.#result) this.#violate('it closed its channel to the host (fd 3) and kept running');
    }, DRAIN_MS);
    if (!this.#session) this.#channelClosedTimer.unref();
  }

  #violate(problem: string): void {
    // After its answer (a result, or a frame it could not read), the child is being discarded: nothing it writes changes that.
    if (this.#protocolError || this.#finished || this.#result || this.#unreadable) return;
    this.#protocolError = problem;
    this.#channel.destroy();
    this.#killGroup('SIGKILL');
  }

  async #onExit(code: number | null, signal: NodeJS.Signals | null): Promise<void> {
    if (this.#exited) return;
    this.#exited = true;
    this.#forgetAtExit();
    // Its pipes drain now, whatever waits for its output.
    this.#readPace.release();
    clearTimeout(this.#handshakeTimer);
    clearTimeout(this.#channelClosedTimer);
    // The leader is gone; whatever it left in its group goes with it.
    this.#killGroup('SIGKILL');
    this.#resolveReady(false);
    // A result written just before a clean exit may still be in the pipe: drain, bounded,
    // because a grandchild that escaped the group could hold the pipe open forever.
    await settlesWithin(this.#pipesClosed, DRAIN_MS);
    for (const timer of this.#stopTimers) clearTimeout(timer);
    this.#channel.destroy();
    this.#child.stdout?.destroy();
    this.#child.stderr?.destroy();
    this.#finishOutput();
    this.#finished = true;
    this.#session?.close();
    const end = this.#endOf(code, signal);
    this.#end = end;
    this.#resolveEnded(end);
    this.#settleRun();
  }

  /** How the child ended, in the terms of a plain Node child whether or not it was sandboxed. */
  #endOf(exitCode: number | null, signal: NodeJS.Signals | null): ChildEnd {
    let sandboxError: string | undefined;
    const stderrTail = this.#stderr.tail();
    const closedUnderIt = exitCode === EXIT_CHANNEL_CLOSED && this.#channelClosedTimer !== undefined && !this.#result; // fd 3 closed, then its runtime exited
    if (this.#sandbox?.started) {
      // bubblewrap reports its child's death by signal N as exit 128+N; a setup failing after it named the sandbox's init (`Can't fork for pid 1`), as exit 1 saying why.
      const bySignal = signalOfExitCode(exitCode);
      if (bySignal) [exitCode, signal] = [null, bySignal];
      else if (!this.#handshaken && exitCode === 1) sandboxError = bwrapSetupFailure(stderrTail);
    } else if (this.#sandbox && signal === null) {
      sandboxError = this.#spawnError ? `bubblewrap could not be started: ${spawnRefusal(this.#spawnError)}` : bwrapSetupFailure(stderrTail) ?? `bubblewrap could not set up the sandbox (exit code ${exitCode})`;
    }
    return {
      exitCode, signal, stderrTail,
      pid: this.pid,
      memoryMb: this.#options.memoryMb,
      ...(this.#protocolError || closedUnderIt ? { protocolError: this.#protocolError ?? 'it closed its channel to the host (fd 3)' } : {}),
      ...(sandboxError ? { sandboxError } : {}),
      ...(this.#crash ? { crash: { reason: this.#crash.reason, error: this.#crash.error } } : {}),
      ...(!this.#handshaken
        ? { handshakeError: this.#handshakeError ?? (this.#spawnError && spawnRefusal(this.#spawnError)) ?? `it ${signal ? `was killed by ${signal}` : `exited with code ${exitCode}`} before its ready message` }
        : {}),
    };
  }

  #settleRun(): void {
    const settle = this.#settle;
    const end = this.#end;
    const haveResult = this.#result !== undefined && !this.#protocolError;
    if (!settle || (!end && !haveResult)) return;
    // Gone after it stopped itself at its time limit, its host held up meanwhile: not a crash; the
    // host's own expiry, due by now, decides (TIMEOUT), as would a caller's abort or shutdown.
    if (!haveResult && this.#stoppedItself && !this.#stopped && !this.#protocolError && !this.#unreadable) return;
    this.#settle = undefined;
    if (haveResult) {
      this.#finishOutput();
      try {
        settle.resolve(unwrapRunnerResult(this.#result!));
      } catch (error) {
        settle.reject(error);
      }
    } else if (this.#unreadable && !this.#protocolError) {
      settle.reject(this.#unreadable);
    } else if (this.#stopped && !this.#protocolError) {
      settle.reject(this.#stopReason);
    } else {
      settle.reject(crashError(end!, this.#subject));
    }
  }

  /** Deliver trailing partial lines and the truncation notices, then stop delivering. */
  #finishOutput(): void {
    this.#stdout.finish();
    this.#stderr.finish();
  }

  /** Signal everything the child started (process-group.ts). */
  #killGroup(signal: NodeJS.Signals): void {
    signalChildGroup(this.#child, this.#sandbox, signal);
  }

  #setRef(on: boolean): void {
    const handles = [this.#child, this.#child.stdout, this.#child.stderr, this.#child.stdio[3], this.#child.stdio[4]] as Array<{ ref?: () => void; unref?: () => void } | null>;
    for (const handle of handles) {
      if (on) handle?.ref?.();
      else handle?.unref?.();
    }
    if (on) this.#handshakeTimer?.ref();
    else this.#handshakeTimer?.unref();
  }
}
