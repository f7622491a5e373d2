// Raw core NATS echo responder: answers every request on SUBJECT with its own payload. Members
// of one queue group share the requests, as the workers of a pool share tasks.
import { connect } from '@nats-io/transport-node';

const nc = await connect({ servers: process.env.NATS_URL, name: 'raw-echo-responder' });
nc.subscribe(process.env.SUBJECT, {
  queue: 'raw-echo',
  callback: (error, msg) => {
    if (!error) msg.respond(msg.data);
  },
});
await nc.flush();
process.once('SIGTERM', () => void nc.drain().then(() => process.exit(0)));
process.stdout.write('ready\n');
