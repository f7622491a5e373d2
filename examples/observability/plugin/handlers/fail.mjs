/** Fails: the execution span gets an error status with the code and message. */
export default async function fail() {
  throw new Error('the quote service is down');
}
