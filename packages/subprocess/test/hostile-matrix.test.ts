import { describeHostileMatrix } from '@kb-labs/plugin-execution-conformance/hostile-matrix';
import { SubprocessBackend } from '@kb-labs/plugin-execution-subprocess';

describeHostileMatrix('subprocess', (options) => new SubprocessBackend(options));
