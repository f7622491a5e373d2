import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import os from 'node:os';

/** Longest status text kept: bubblewrap writes two short JSON objects. */
const MAX_STATUS_CHARS = 4096;

/**
 * What bubblewrap says on its status descriptor (`--json-status-fd`): the host pid of the
 * sandbox's init (pid 1 of its namespace, which runs Node as pid 2) once the sandbox is set up,
 * then Node's exit code. No pid means the sandbox never came up — a setup failure, not a plugin
 * crash.
 */
export class SandboxStatus {
  #text = '';
  #childPid: number | undefined;
  #childExited = false;

  constructor(stream: Socket) {
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      if (this.#text.length < MAX_STATUS_CHARS) this.#text += chunk;
      this.#childPid ??= numberField(this.#text, 'child-pid');
      if (numberField(this.#text, 'exit-code') !== undefined) this.#childExited = true;
    });
    stream.on('error', () => {});
  }

  /** Host pid of the sandbox's init while Node may still be running: killing it ends every process inside. */
  get initPid(): number | undefined {
    return this.#childExited ? undefined : this.#childPid;
  }

  /** Host pid of Node itself (the init's child), for a signal it should get with its default action. */
  nodePid(): number | undefined {
    const init = this.initPid;
    if (init === undefined) return undefined;
    try {
      const first = readFileSync(`/proc/${init}/task/${init}/children`, 'latin1').trim().split(' ')[0];
      return first ? Number(first) : undefined;
    } catch {
      return undefined;
    }
  }

  /** Whether bubblewrap made the sandbox's init (the sandbox's setup follows: one that fails exits 1, saying why on stderr). */
  get started(): boolean {
    return this.#childPid !== undefined;
  }
}

function numberField(text: string, name: string): number | undefined {
  const match = new RegExp(`"${name}"\\s*:\\s*(\\d+)`).exec(text);
  return match ? Number(match[1]) : undefined;
}

/**
 * bubblewrap exits with 128+N when the process it ran was killed by signal N: the signal's
 * name, or undefined when the code is not such an exit.
 */
export function signalOfExitCode(code: number | null): NodeJS.Signals | undefined {
  if (code === null || code <= 128 || code >= 128 + 65) return undefined;
  const number = code - 128;
  return (Object.keys(os.constants.signals) as NodeJS.Signals[]).find((name) => os.constants.signals[name] === number);
}
