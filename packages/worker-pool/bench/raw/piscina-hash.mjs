import { createHash } from 'node:crypto';

const BLOCK = Buffer.alloc(16 * 1024, 7);

// Raw piscina running the same CPU work as plugin/handlers/hash.mjs: what two threads can do on
// this machine at best.
export default function hash({ rounds }) {
  const hash = createHash('sha256');
  for (let i = 0; i < rounds; i++) hash.update(BLOCK);
  return hash.digest('hex').slice(0, 16);
}
