import { describeHostileMatrix } from '@kb-labs/plugin-execution-conformance/hostile-matrix';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';

describeHostileMatrix('in-process', (options) => new InProcessBackend(options));
