// Raw piscina baseline: the task comes back unchanged.
export default function echo(input) {
  return input;
}
