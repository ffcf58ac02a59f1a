/** Small helpers the client end-to-end tests share. */

/** Every item of a stream (an SDK `Stream`, an async generator), in order. */
export async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of stream) out.push(x);
  return out;
}

/** The rejection of `p` (fails the test if `p` resolves). */
export async function rejection(p: Promise<unknown>): Promise<any> {
  return p.then(
    () => {
      throw new Error('expected the request to fail');
    },
    (e: unknown) => e,
  );
}
