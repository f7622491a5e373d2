/** A running worker of a pool. */
export interface ExecutionWorker {
  /** Its id in the pool (`meta.runnerId` of what it runs). */
  readonly id: string;
  /** The machine's host name (`meta.runnerHost`). */
  readonly host: string;
  /** Executions running now. */
  readonly running: number;
  /**
   * Take nothing new, let what runs finish (up to `timeoutMs`, then stop it), then close. A
   * `timeoutMs` that is not a whole number of ms from 0 to 2147483647, or an unknown option,
   * rejects with VALIDATION_ERROR and drains nothing (checked on every call). Called again while it
   * drains, a shorter `timeoutMs` stops what runs by then. @default timeoutMs 30000
   */
  drain(options?: { timeoutMs?: number }): Promise<void>;
  /** Stop what runs now and close: local backend, connection, timers. */
  close(): Promise<void>;
  /** Settles once it is closed: by drain() or close(), or by itself once its own machinery failed (a KB_PLUGIN_WORKER_INTERNAL warning). */
  readonly closed: Promise<void>;
}
