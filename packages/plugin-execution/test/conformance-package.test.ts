import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromRepo, packPublished, run, runOk } from './packed.js';

// What a backend author gets from the registry: the conformance package, packed as `pnpm publish`
// packs it, installed with npm (beside core, the in-process backend and vitest) into a project
// outside the workspace, then run, as docs/backend-authors.md says, against a backend of its own.
const tsc = fromRepo.resolve('typescript/bin/tsc');
const vitestVersion = (fromRepo('vitest/package.json') as { version: string }).version;
const typesNodeVersion = (fromRepo('@types/node/package.json') as { version: string }).version;
const INSTALLED = ['@kb-labs/plugin-execution-core', '@kb-labs/plugin-execution-in-process', '@kb-labs/plugin-execution-conformance'];

/** A backend of a type of its own, on BaseBackend, whose runner is the in-process backend's (its protected dispatch keeps no state of that backend). */
const MY_BACKEND = `import type { BackendOptions, IsolationReport } from '@kb-labs/plugin-execution-core';
import { BaseBackend, type DispatchControl, type RunnerTask } from '@kb-labs/plugin-execution-core/backend-kit';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';

class InProcessRunner extends InProcessBackend {
  run(task: RunnerTask, control: DispatchControl): Promise<unknown> {
    return this.dispatch(task, control);
  }
}

export class MyBackend extends BaseBackend {
  readonly #runner = new InProcessRunner();
  constructor(options: BackendOptions = {}) {
    super('my-backend', options, { concurrency: 64, releaseSlotOnStop: true });
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
`;

/** The suite and the matrix, as the conformance package's README starts them, with the in-process backend's capabilities and column. */
const MY_TEST = `import { describeConformance } from '@kb-labs/plugin-execution-conformance';
import { describeHostileMatrix } from '@kb-labs/plugin-execution-conformance/hostile-matrix';
import { MyBackend } from './my-backend.js';

describeConformance('my-backend', (options) => new MyBackend(options), {
  preemptsSyncCode: false,
  isolatesCrashes: false,
  isolatesGlobals: false,
  loadsModulesWithNode: false,
  capturesOutput: false,
  sharesMemory: true,
});
describeHostileMatrix('my-backend', (options) => new MyBackend(options), { column: 'in-process' });
`;

/** What vitest's json reporter writes, as far as these tests read it. */
interface VitestReport {
  numFailedTests: number;
  testResults: Array<{ assertionResults: Array<{ ancestorTitles: string[]; status: string }> }>;
}

describe("the packed conformance package, in a backend author's project outside the workspace", () => {
  let root: string;
  let project: string;

  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'kb-conformance-package-'));
    const packed = path.join(root, 'tarballs');
    await mkdir(packed);
    const tarballs = await packPublished(packed);
    project = path.join(root, 'my-backend');
    await mkdir(project);
    await writeFile(path.join(project, 'package.json'), JSON.stringify({ name: 'my-backend', version: '0.0.0', private: true, type: 'module' }));
    await writeFile(path.join(project, 'my-backend.ts'), MY_BACKEND);
    await writeFile(path.join(project, 'my-backend.test.ts'), MY_TEST);
    // skipLibCheck off, TypeScript's own lib files left unchecked (they come with the compiler, not the install), as pack-install.test.ts's.
    const compilerOptions = { strict: true, noEmit: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', types: ['node'], skipLibCheck: false, skipDefaultLibCheck: true };
    await writeFile(path.join(project, 'tsconfig.json'), JSON.stringify({ compilerOptions, files: ['my-backend.ts', 'my-backend.test.ts'] }));
    const specs = [...INSTALLED.map((name) => tarballs.get(name)!), `vitest@${vitestVersion}`, `@types/node@${typesNodeVersion}`];
    await runOk('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', ...specs], project);
  }, 300_000);

  afterAll(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('is published: a version, its built entries with their types, and the fixture plugins beside them', async () => {
    const installed = path.join(project, 'node_modules', '@kb-labs', 'plugin-execution-conformance');
    const manifest = JSON.parse(await readFile(path.join(installed, 'package.json'), 'utf8')) as { private?: boolean; exports: Record<string, unknown>; peerDependencies: Record<string, string> };
    expect(manifest.private).toBeUndefined();
    expect(manifest.exports['.']).toEqual({ types: './dist/index.d.ts', default: './dist/index.js' });
    expect(manifest.exports['./hostile-matrix']).toEqual({ types: './dist/hostile-matrix.d.ts', default: './dist/hostile-matrix.js' });
    expect(manifest.peerDependencies).toHaveProperty('vitest');
    await expect(readFile(path.join(installed, 'fixtures', 'plugins', 'basic', 'kb.plugin.json'), 'utf8')).resolves.toContain('@conformance/basic');
  });

  it('a backend of its own type passes the whole suite and the hostile matrix (its in-process column), run by vitest from the installed package', async () => {
    const vitest = path.join(project, 'node_modules', 'vitest', 'vitest.mjs');
    const result = await run(process.execPath, [vitest, 'run', '--reporter=json', '--outputFile=report.json'], project);
    expect(result.status, result.stdout + result.stderr).toBe(0);
    const report = JSON.parse(await readFile(path.join(project, 'report.json'), 'utf8')) as VitestReport;
    const passed = (suite: string) => report.testResults.flatMap((file) => file.assertionResults).filter((test) => test.ancestorTitles[0] === suite && test.status === 'passed').length;
    expect(report.numFailedTests).toBe(0);
    // Most of each, the rest skipped by the capabilities and the column (in-process defends less).
    expect(passed('conformance: my-backend')).toBeGreaterThan(100);
    expect(passed('hostile matrix: my-backend (the in-process column)')).toBeGreaterThan(10);
  }, 180_000);

  it('the backend and its test file type-check under strict against the installed types, skipLibCheck off', async () => {
    const check = await run(process.execPath, [tsc, '-p', 'tsconfig.json'], project);
    expect(check.stdout + check.stderr).toBe('');
    expect(check.status).toBe(0);
  }, 180_000); // tsc: ~15 s here, several times that on a busy machine
});
