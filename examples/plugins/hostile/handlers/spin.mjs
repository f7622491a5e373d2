/** A synchronous infinite loop. */
export default function spin() {
  for (;;) {}
}
