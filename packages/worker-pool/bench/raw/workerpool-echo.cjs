// Raw workerpool baseline: the task comes back unchanged.
const workerpool = require('workerpool');

workerpool.worker({ echo: (input) => input });
