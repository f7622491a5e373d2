/**
 * The behaviour suite of DESIGN.md's invariants. Written once; every backend's test file calls
 * `describeConformance(...)` with a factory and adds only what is specific to it.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { BackendOptions, IExecutionBackend } from '@kb-labs/plugin-execution-core';
import { afterAll, afterEach, beforeAll, describe, expect } from 'vitest';
import { fixturePlugins } from './fixtures.js';
import type { BackendFactory, ConformanceCapabilities, SuiteContext } from './suite-context.js';
import { describeBeginBy } from './suite/begin-by.js';
import { describeCallsFromResult } from './suite/calls-from-result.js';
import { describeCallsOfAborted } from './suite/calls-of-aborted.js';
import { describeErrors } from './suite/errors.js';
import { describeCrashes, describeGlobalState } from './suite/isolation.js';
import { describeLifecycle } from './suite/lifecycle.js';
import { describeLogsAndEvents } from './suite/logs-and-events.js';
import { describeOutputOrder } from './suite/output-order.js';
import { describePermissions } from './suite/permissions.js';
import { describeTelemetry } from './suite/telemetry.js';
import { describeReload } from './suite/reload.js';
import { describeResults } from './suite/results.js';
import { describeShutdownMeetsLimit } from './suite/shutdown-meets-limit.js';
import { describeStartCallback } from './suite/start-callback.js';
import { describeTimeLimits } from './suite/time-limits.js';
import { describeValidation } from './suite/validation.js';
import { describeWorkspace } from './suite/workspace.js';
import { testPlatform } from './test-platform.js';

export function describeConformance(name: string, create: BackendFactory, capabilities: ConformanceCapabilities): void {
  describe(`conformance: ${name}`, () => {
    let root: string;
    const backends: IExecutionBackend[] = [];

    const make = (options: BackendOptions & Record<string, unknown> = {}) => {
      const backend = create({
        plugins: [fixturePlugins.basic, fixturePlugins.hostile, fixturePlugins.guarded, fixturePlugins.cjs],
        workspace: { root },
        platform: testPlatform(),
        ...options,
      });
      backends.push(backend);
      return backend;
    };

    beforeAll(async () => {
      root = await mkdtemp(path.join(os.tmpdir(), `kb-conformance-${name}-`));
    });

    afterEach(async () => {
      await Promise.all(backends.splice(0).map((b) => b.shutdown({ timeoutMs: 2000 })));
      // Invariant 7 + 6: every lease released, on every path.
      expect(await readdir(root)).toEqual([]);
    });

    afterAll(async () => {
      await rm(root, { recursive: true, force: true });
    });

    const suite: SuiteContext = { name, capabilities, make, root: () => root };
    describeResults(suite);
    describeValidation(suite);
    describeErrors(suite);
    describeTimeLimits(suite);
    describeBeginBy(suite);
    describeWorkspace(suite);
    describeLogsAndEvents(suite);
    describeOutputOrder(suite);
    describePermissions(suite);
    describeCallsOfAborted(suite);
    describeCallsFromResult(suite);
    describeLifecycle(suite);
    describeStartCallback(suite);
    describeShutdownMeetsLimit(suite);
    describeCrashes(suite);
    describeGlobalState(suite);
    describeReload(suite);
    describeTelemetry(suite);
  });
}
