/** Fails the way real code does: an error with a cause chain. */
export default async function fail() {
  const cause = new Error('connection refused');
  throw new Error('could not fetch the weather', { cause });
}
