import { createHash } from 'node:crypto';

/** Hashes for about `input.ms` milliseconds: CPU-bound work that blocks whatever thread runs it. */
export default async function hash(input) {
  const until = performance.now() + (input?.ms ?? 20);
  let digest = Buffer.from(String(input?.seed ?? 'seed'));
  let rounds = 0;
  while (performance.now() < until) {
    digest = createHash('sha256').update(digest).digest();
    rounds++;
  }
  return { rounds, digest: digest.toString('hex').slice(0, 16) };
}
