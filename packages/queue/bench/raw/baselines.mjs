// The raw baselines the queue backend is measured against, each with its own worker processes:
//   - core NATS request-reply to an echo responder (queue group of `workers` processes);
//   - a JetStream work-queue echo: a work-queue stream, one shared durable pull consumer,
//     `workers` processes that pull, ack and answer on the caller's subject (core NATS); the
//     caller publishes with JetStream publish (waits for the PubAck) and then for the answer.
// Each start function returns `{ call(payload) → Promise<Uint8Array>, stop() }`.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AckPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { connect, createInbox, headers } from '@nats-io/transport-node';
import { benchEnv, startProcesses } from './processes.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const CALL_TIMEOUT_MS = 30_000;

/** Raw core NATS request-reply echo with `workers` responder processes. */
export async function startRawRequestReply({ url, workers = 2 }) {
  const subject = `raw.echo.${randomBytes(4).toString('hex')}`;
  const responders = await startProcesses(workers, path.join(here, 'echo-responder.mjs'), benchEnv({ NATS_URL: url, SUBJECT: subject }));
  const nc = await connect({ servers: url, name: 'raw-echo-requester' });
  return {
    async call(payload) {
      return (await nc.request(subject, payload, { timeout: CALL_TIMEOUT_MS })).data;
    },
    async stop() {
      await nc.close();
      await Promise.all(responders.map((r) => r.stop()));
    },
  };
}

/**
 * Raw JetStream work-queue echo with `workers` processes buffering at most `concurrency` each.
 * `storage` as the queue backend's stream (its default: memory). `ackMode: 'double'`: workers
 * wait for the server to confirm each ack before they answer.
 */
export async function startRawJetStreamEcho({ url, workers = 2, concurrency = 32, storage = 'memory', ackMode = 'ack' }) {
  const tag = randomBytes(4).toString('hex');
  const stream = `RAW_ECHO_${tag}`;
  const tasks = `raw.jsecho.${tag}.tasks`;
  const consumerName = 'workers';
  const nc = await connect({ servers: url, name: 'raw-jetstream-echo-caller' });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({
    name: stream,
    subjects: [tasks],
    retention: RetentionPolicy.Workqueue,
    storage: storage === 'file' ? StorageType.File : StorageType.Memory,
    max_msg_size: nc.info?.max_payload ?? -1,
  });
  await jsm.consumers.add(stream, { durable_name: consumerName, ack_policy: AckPolicy.Explicit, max_ack_pending: -1 });
  let workerProcesses;
  try {
    workerProcesses = await startProcesses(
      workers,
      path.join(here, 'jetstream-echo-worker.mjs'),
      benchEnv({ NATS_URL: url, STREAM: stream, CONSUMER: consumerName, CONCURRENCY: String(concurrency), ACK_MODE: ackMode }),
    );
  } catch (error) {
    await jsm.streams.delete(stream).catch(() => undefined);
    await nc.close();
    throw error;
  }

  // One subscription for every answer to this caller, matched by the `id` header.
  const replySubject = createInbox();
  const waiting = new Map();
  nc.subscribe(replySubject, {
    callback: (error, msg) => {
      if (error) return;
      const id = msg.headers?.get('id');
      waiting.get(id)?.(msg.data);
      waiting.delete(id);
    },
  });
  await nc.flush();
  const js = jetstream(nc);
  let sequence = 0;

  return {
    async call(payload) {
      const id = String(++sequence);
      const answered = new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(id);
          reject(new Error(`raw JetStream echo: no answer to ${id} within ${CALL_TIMEOUT_MS} ms`));
        }, CALL_TIMEOUT_MS);
        waiting.set(id, (data) => {
          clearTimeout(timer);
          resolve(data);
        });
      });
      const h = headers();
      h.set('id', id);
      h.set('reply-to', replySubject);
      await js.publish(tasks, payload, { headers: h, timeout: CALL_TIMEOUT_MS });
      return answered;
    },
    async stop() {
      await Promise.all(workerProcesses.map((w) => w.stop()));
      await jsm.streams.delete(stream).catch(() => undefined);
      await nc.close();
    },
  };
}
