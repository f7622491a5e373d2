import { createHash } from 'node:crypto';

// Raw piscina running the same CPU work as plugin/handlers/hash.mjs: what two threads can do on
// this machine at best.
export default function hash({ rounds }) {
  let digest = Buffer.alloc(32);
  for (let i = 0; i < rounds; i++) digest = createHash('sha256').update(digest).digest();
  return digest.toString('hex').slice(0, 16);
}
