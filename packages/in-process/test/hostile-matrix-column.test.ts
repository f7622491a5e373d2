import type { BackendOptions, IsolationReport } from '@kb-labs/plugin-execution-core';
import { BaseBackend, type DispatchControl, type RunnerTask } from '@kb-labs/plugin-execution-core/backend-kit';
import { describeHostileMatrix } from '@kb-labs/plugin-execution-conformance/hostile-matrix';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { describe, expect, it } from 'vitest';

/** The in-process backend's runner, reached as a backend of another package would reach its own. */
class InProcessRunner extends InProcessBackend {
  run(task: RunnerTask, control: DispatchControl): Promise<unknown> {
    return this.dispatch(task, control);
  }
}

/** A backend of a type the matrix has no column for, as a third party's would be: its handlers run on the host's thread. */
class ThirdPartyBackend extends BaseBackend {
  readonly #runner = new InProcessRunner();
  constructor(options: BackendOptions = {}) {
    super('third-party-in-process', options, { concurrency: 64, releaseSlotOnStop: true });
  }
  protected dispatch(task: RunnerTask, control: DispatchControl): Promise<unknown> {
    return this.#runner.run(task, control);
  }
  protected closeRunners(): Promise<void> {
    return this.#runner.shutdown();
  }
  protected isolation(): IsolationReport {
    return { requested: 'none', active: 'none', layers: [], reason: "handlers run on the host's own thread" };
  }
}

// Held to the in-process column: its handlers run on the host's thread.
describeHostileMatrix('third-party-in-process', (options) => new ThirdPartyBackend(options), { column: 'in-process' });

describe('describeHostileMatrix, for a backend type that is not a column of the matrix', () => {
  const create = () => new ThirdPartyBackend();
  it('refuses one without a column, naming the columns there are', () => {
    expect(() => describeHostileMatrix('third-party-in-process', create)).toThrow(
      'describeHostileMatrix: "third-party-in-process" is not a column of the matrix (in-process, worker-pool, subprocess, queue): give { column } naming the built-in backend whose defences yours has',
    );
  });

  it('refuses a column the matrix does not have', () => {
    expect(() => describeHostileMatrix('third-party-in-process', create, { column: 'thread' as never })).toThrow('describeHostileMatrix: column "thread" is not one of in-process, worker-pool, subprocess, queue');
  });
});
