// Raw JetStream work-queue echo worker: pulls from the shared durable consumer (at most
// CONCURRENCY messages buffered), acks each message, then publishes its payload as a core NATS
// message to the caller's subject (header `reply-to`), tagged with the caller's `id` header.
// ACK_MODE=double waits for the server to confirm the ack before answering (the claim an
// at-most-once worker makes before it runs anything), messages still handled concurrently.
import { jetstream } from '@nats-io/jetstream';
import { connect, headers } from '@nats-io/transport-node';

const { NATS_URL, STREAM, CONSUMER, CONCURRENCY, ACK_MODE } = process.env;
const nc = await connect({ servers: NATS_URL, name: 'raw-jetstream-echo-worker' });
const consumer = await jetstream(nc).consumers.get(STREAM, CONSUMER);
const messages = await consumer.consume({ max_messages: Number(CONCURRENCY) || 32 });
await nc.flush();
process.once('SIGTERM', () => {
  messages.stop();
  void nc.drain().then(() => process.exit(0));
});
process.stdout.write('ready\n');

function answer(msg) {
  const replyTo = msg.headers?.get('reply-to');
  if (!replyTo) return;
  const reply = headers();
  reply.set('id', msg.headers.get('id'));
  nc.publish(replyTo, msg.data, { headers: reply });
}

for await (const msg of messages) {
  if (ACK_MODE === 'double') {
    msg.ackAck().then((acked) => acked && answer(msg), () => undefined);
  } else {
    msg.ack();
    answer(msg);
  }
}
