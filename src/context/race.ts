/**
 * Waiting with a limit: a builder's promise raced against its timeout (rejecting with
 * `TIMED_OUT`), and the client leaving as a promise (resolving to `ABORTED`).
 */
/** What `within` rejects with when the time is up. */
export const TIMED_OUT = Symbol('timed out');
/** What `abortPromise` resolves to when the signal aborts. */
export const ABORTED = Symbol('aborted');

/** `p`, or a rejection with `TIMED_OUT` after `ms`; the timer is cleared either way. */
export function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(TIMED_OUT), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** A promise of `ABORTED` once `signal` aborts; `dispose` removes its listener. */
export function abortPromise(signal: AbortSignal): { promise: Promise<typeof ABORTED>; dispose(): void } {
  let onAbort: () => void = () => undefined;
  const promise = new Promise<typeof ABORTED>((resolve) => {
    onAbort = () => resolve(ABORTED);
    if (signal.aborted) resolve(ABORTED);
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  return { promise, dispose: () => signal.removeEventListener('abort', onAbort) };
}
