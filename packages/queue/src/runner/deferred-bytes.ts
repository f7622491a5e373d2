/** Bytes still to come (an execution's input in parts): a promise and the means to settle it once. */
/** `came`: resolved (the input came, or is no longer waited for). */
export type DeferredBytes = { resolve: (bytes: Uint8Array) => void; promise: Promise<Uint8Array>; came: boolean };

export function deferredBytes(): DeferredBytes {
  const deferred = { came: false } as DeferredBytes;
  deferred.promise = new Promise<Uint8Array>((resolve) => {
    deferred.resolve = (bytes) => {
      deferred.came = true;
      resolve(bytes);
    };
  });
  return deferred;
}
