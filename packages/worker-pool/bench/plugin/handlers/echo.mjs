/** Returns its input: the trivial handler of the throughput and latency figures. */
export default function echo(input) {
  return input;
}
