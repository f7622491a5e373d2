/** Kills whatever process runs it. */
export default async function crash() {
  process.exit(13);
}
