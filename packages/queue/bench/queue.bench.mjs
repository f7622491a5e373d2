// Queue backend against raw NATS, side by side in one run, on one nats-server started for it
// (scripts/nats-server.mjs, max_payload 8MB, JetStream in a temp dir), each contender with 2
// worker processes of its own, started with an explicit environment:
//   - round trip: sequential echo executions, p50, against raw core NATS request-reply to an echo
//     responder (2 processes in a queue group);
//   - throughput at 64 in flight (10,000 per round), against a raw JetStream work-queue echo
//     (work-queue stream, shared durable pull consumer, 2 processes that pull, ack and answer);
//   - 2 MB each way: sequential, p50 (raw figures beside it, no target).
// For information, the JetStream echo again with each ack confirmed by the server before the
// answer (the claim of an at-most-once worker).
// Rounds interleave the contenders so that they share the machine's noise. The queue backend is
// measured once packages/queue is built; before that the raw baselines still run.
import { randomBytes } from 'node:crypto';
import { heading, jsonMode, percentile, report, timeEach } from '../../../scripts/bench-report.mjs';
import { startNatsServer } from '../../../scripts/nats-server.mjs';
import { startQueueContender } from './queue-contender.mjs';
import { startRawJetStreamEcho, startRawRequestReply } from './raw/baselines.mjs';

const WORKERS = 2;
const CONCURRENCY = 32; // per worker process
const IN_FLIGHT = 64;
const ROUNDS = 3;
const SEQUENTIAL_PER_ROUND = 400;
const THROUGHPUT_PER_ROUND = 10_000;
const BIG_PER_ROUND = 15;
const targets = { roundTrip: 1.5, throughput: 0.7 };

// The same bytes for every contender: a small request, and 2 MiB of text (no compression on NATS).
const smallInput = { args: ['--verbose'], n: 1 };
const smallBytes = new TextEncoder().encode(JSON.stringify({ pluginId: '@bench/echo', handlerId: 'echo', input: smallInput }));
const bigText = randomBytes(1.5 * 1024 * 1024).toString('base64');
const bigBytes = new TextEncoder().encode(bigText);

/** Calls per second with `inFlight` calls kept going until `total` have completed. */
async function throughput(call, total, inFlight) {
  let issued = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (issued < total) {
        issued++;
        await call();
      }
    }),
  );
  return total / ((performance.now() - started) / 1000);
}

const median = (values) => percentile(values, 0.5);
const note = (text) => (jsonMode ? process.stderr : process.stdout).write(`  ${text}\n`);

const server = await startNatsServer({ maxPayload: '8MB' });
const serverVersion = /Version:\s+(\S+)/.exec(server.stderrTail())?.[1] ?? '?';
const stops = [];
try {
  const requestReply = await startRawRequestReply({ url: server.url, workers: WORKERS });
  stops.push(requestReply.stop);
  const jetStreamEcho = await startRawJetStreamEcho({ url: server.url, workers: WORKERS, concurrency: CONCURRENCY });
  stops.push(jetStreamEcho.stop);
  const claimedEcho = await startRawJetStreamEcho({ url: server.url, workers: WORKERS, concurrency: CONCURRENCY, ackMode: 'double' });
  stops.push(claimedEcho.stop);
  const queue = await startQueueContender({ url: server.url, workers: WORKERS, concurrency: CONCURRENCY, inFlight: IN_FLIGHT });
  if (queue.stop) stops.push(queue.stop);

  // What each contender runs per figure (`throughput`: whether that one is measured).
  const contenders = {
    requestReply: { small: () => requestReply.call(smallBytes), big: () => requestReply.call(bigBytes), throughput: false },
    jetStreamEcho: { small: () => jetStreamEcho.call(smallBytes), big: () => jetStreamEcho.call(bigBytes), throughput: true },
    claimedEcho: { small: () => claimedEcho.call(smallBytes), big: () => claimedEcho.call(bigBytes), throughput: true },
    ...(queue.call ? { queue: { small: () => queue.call(smallInput), big: () => queue.call(bigText), throughput: true } } : {}),
  };
  const samples = Object.fromEntries(Object.keys(contenders).map((name) => [name, { small: [], big: [], throughput: [] }]));

  // Warm up: connections, JIT, the queue's first plugin load; checks the echo comes back whole.
  for (const [name, contender] of Object.entries(contenders)) {
    const echoed = await contender.big();
    const length = typeof echoed === 'string' ? echoed.length : echoed.byteLength;
    if (length !== bigBytes.byteLength) throw new Error(`${name}: 2 MiB echo came back as ${length} bytes`);
    await timeEach(contender.small, 0, 200);
    await throughput(contender.small, 1_000, IN_FLIGHT);
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, contender] of Object.entries(contenders)) {
      samples[name].small.push(...(await timeEach(contender.small, SEQUENTIAL_PER_ROUND, 20)));
      samples[name].big.push(...(await timeEach(contender.big, BIG_PER_ROUND, 1)));
      if (contender.throughput) samples[name].throughput.push(await throughput(contender.small, THROUGHPUT_PER_ROUND, IN_FLIGHT));
    }
  }

  heading(
    `queue backend vs raw NATS (nats-server ${serverVersion}, ${WORKERS} worker processes × ${CONCURRENCY}, ${IN_FLIGHT} in flight, ` +
      `${ROUNDS} interleaved rounds, Node ${process.version})`,
  );
  const rr = samples.requestReply;
  const js = samples.jetStreamEcho;
  report('raw NATS request-reply, sequential: p50', median(rr.small), 'ms');
  report('raw NATS request-reply, sequential: p99', percentile(rr.small, 0.99), 'ms');
  report('raw NATS request-reply, 2 MB each way: p50', median(rr.big), 'ms');
  report('raw JetStream work-queue echo, sequential: p50', median(js.small), 'ms');
  report(`raw JetStream work-queue echo, ${IN_FLIGHT} in flight`, median(js.throughput), 'msg/s');
  report('raw JetStream work-queue echo, 2 MB each way: p50', median(js.big), 'ms');
  // Not a target: what the claim an at-most-once worker makes before running (ack confirmed by
  // the server) costs on its own, the same echo otherwise.
  const claimed = samples.claimedEcho;
  report('raw JetStream echo, ack confirmed first, sequential: p50', median(claimed.small), 'ms');
  report(`raw JetStream echo, ack confirmed first, ${IN_FLIGHT} in flight`, median(claimed.throughput), 'msg/s');
  report('raw JetStream echo, ack confirmed first, 2 MB: p50', median(claimed.big), 'ms');
  if (queue.skipped) {
    note(queue.skipped);
  } else {
    const q = samples.queue;
    report('queue round trip, sequential: p50', median(q.small), 'ms');
    report('queue round trip, sequential: p99', percentile(q.small, 0.99), 'ms');
    report('queue round trip p50 / raw request-reply p50', median(q.small) / median(rr.small), 'x', { op: '<=', value: targets.roundTrip });
    report(`queue throughput, ${IN_FLIGHT} in flight`, median(q.throughput), 'exec/s');
    report('queue throughput / raw JetStream echo throughput', median(q.throughput) / median(js.throughput), 'x', { op: '>=', value: targets.throughput });
    report('queue 2 MB each way: p50', median(q.big), 'ms');
    report('queue 2 MB p50 / raw JetStream echo 2 MB p50', median(q.big) / median(js.big), 'x');
  }
} finally {
  for (const stop of stops.reverse()) await stop().catch((error) => console.error(error));
  await server.stop();
}
