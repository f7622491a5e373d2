import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const project = fileURLToPath(new URL('./types/tsconfig.json', import.meta.url));

/** The names `dts` exports as values (a class, a function, a constant): what a host may use at run time by its typings. */
async function valueExports(dts: string): Promise<string[]> {
  const ts = (await import('typescript')).default;
  const program = ts.createProgram([dts], { noEmit: true, skipLibCheck: true, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext });
  const checker = program.getTypeChecker();
  const typeOnly = (symbol: import('typescript').Symbol) =>
    (symbol.declarations ?? []).some((d) => ts.isTypeOnlyImportOrExportDeclaration(d) || (ts.isExportSpecifier(d) && d.parent.parent.isTypeOnly));
  return checker
    .getExportsOfModule(checker.getSymbolAtLocation(program.getSourceFile(dts)!)!)
    .filter((symbol) => !typeOnly(symbol) && ((symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol).flags & ts.SymbolFlags.Value) !== 0)
    .map((symbol) => symbol.name);
}

describe('typings against the builds', () => {
  it.each([
    ['index.d.ts', 'index.js'],
    ['index.d.cts', 'index.cjs'],
  ])('every value %s exports (a class, a function, a constant) is exported by %s at run time', async (dts, js) => {
    const values = await valueExports(fileURLToPath(new URL(`../dist/${dts}`, import.meta.url)));
    const built = fileURLToPath(new URL(`../dist/${js}`, import.meta.url));
    const runtime = (js.endsWith('.cjs') ? createRequire(import.meta.url)(built) : await import(built)) as Record<string, unknown>;
    expect(values.length).toBeGreaterThan(20);
    expect(values.filter((name) => !(name in runtime))).toEqual([]);
  });
});

describe('compile-time checks (tsc on test/types)', () => {
  it("createExecutionBackend's options are typed per backend type: a misspelt option does not compile", () => {
    const run = spawnSync(process.execPath, [tsc, '--noEmit', '-p', project], { encoding: 'utf8' });
    // Each `@ts-expect-error` that meets no error is itself an error, so this fails both ways.
    expect(run.stdout + run.stderr).toBe('');
    expect(run.status).toBe(0);
  });
});
