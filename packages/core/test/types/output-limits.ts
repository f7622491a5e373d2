// Compile-time checks of OutputLines' caps, run by types.test.ts with `tsc --noEmit`: every
// `@ts-expect-error` below must meet an error, and everything else must compile.
import { OutputLines, type OutputLimits, type StreamOutputLimits } from '@kb-labs/plugin-execution-core/backend-kit';
import { outputLimits } from '@kb-labs/plugin-execution-core/host-kit';

const deliver = (lines: string[]): void => void lines;
// What outputLimits.resolve() gives is what OutputLines takes.
const resolved: StreamOutputLimits = outputLimits.resolve({ maxLogLineLength: 80 });
new OutputLines(resolved, deliver);
// The former names still compile (deprecated).
const former: OutputLimits = { maxLineLength: 80, maxChars: 1000 };
new OutputLines(former, deliver);
// @ts-expect-error one name of each is neither
new OutputLines({ maxLogLineLength: 80, maxChars: 1000 }, deliver);
