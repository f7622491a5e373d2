import { writeFile } from 'node:fs/promises';
import path from 'node:path';

/** Counts words and writes a report into the execution's workspace (listed in meta.artifacts). */
export default async function countWords(input, ctx) {
  const words = String(input?.text ?? '').split(/\s+/).filter(Boolean);
  const counts = {};
  for (const word of words) counts[word.toLowerCase()] = (counts[word.toLowerCase()] ?? 0) + 1;
  await writeFile(path.join(ctx.workspace.dir, 'report.json'), JSON.stringify(counts, null, 2));
  return { words: words.length, distinct: Object.keys(counts).length };
}
