import type { z } from 'zod';

/** What a backend tells the base class about itself. */
export interface BackendDefaults {
  /** The default for `maxConcurrency`. */
  concurrency: number;
  /**
   * The backend's whole option schema (`backendOptionsSchema().extend({...})`, built in the
   * constructor from a lazySchema): the constructor validates the options with it, once, unknown
   * options refused. @default backendOptionsSchema()
   */
  optionsSchema?: z.ZodObject;
  /** Where a top-level option the backend does not take goes instead, as a whole phrase (queue: `servers` → `connection: { servers }`), or undefined. */
  optionElsewhere?: (key: string) => string | undefined;
  maxQueue?: number;
  /** Give the slot back as soon as an execution is timed out or aborted, without waiting for its runner to stop (in-process: it cannot stop one, whose handler runs on the host's own loop: an answer after the time limit is a TIMEOUT). */
  releaseSlotOnStop?: boolean;
  /** The runners are on other machines (queue): each execution's OpenTelemetry span is a CLIENT span, not INTERNAL (docs/observability.md). @default false */
  remoteRunners?: boolean;
  /** Those runners give executions workspaces there (queue: unless its `workspace` is false): `keepWorkspace` is not refused for want of one here. @default false */
  remoteWorkspaces?: boolean;
}
