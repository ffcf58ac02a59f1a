/**
 * Reading a relayed body on the side: the client gets the bytes as they come while a reader
 * sees each chunk (usage, an error code), and a non-stream answer's head can be read first
 * (for the cost header). Used by the pass-through routes (passthrough-usage.ts).
 */
import type { Exchange } from './exchange.js';
import { bodyReadError } from './upstream-body.js';

/**
 * A non-stream answer up to this size is read whole before it goes, as on the chat route,
 * so that `x-promptgate-cost-usd` can go with it; a larger one (a big embeddings batch) is
 * relayed as it arrives and accounted when it ends, without the header.
 */
const HEADER_WAIT_BYTES = 4 * 1024 * 1024;

/** The first chunks of a body: all of it (`done`) or up to HEADER_WAIT_BYTES. */
interface Head {
  chunks: Uint8Array[];
  done: boolean;
}

/** Nothing read ahead: the whole body is relayed as it comes. */
export const NOTHING_READ: Head = Object.freeze({ chunks: [], done: false }) as Head;

/**
 * Reads the head of a non-stream answer. Nothing has gone to the client yet, so a read that
 * fails is answered as on the chat route (`readAll`): 502 `upstream_error`, 504
 * `upstream_timeout`, 503 `shutting_down`, or a client abort.
 */
export async function readHead(iterator: AsyncIterator<Uint8Array>, reader: SideReader<unknown>, exchange: Exchange): Promise<Head> {
  const head: Head = { chunks: [], done: false };
  let bytes = 0;
  try {
    while (bytes <= HEADER_WAIT_BYTES) {
      const { value, done } = await iterator.next();
      if (done) {
        head.done = true;
        break;
      }
      reader.chunk(value);
      head.chunks.push(value);
      bytes += value.byteLength;
    }
  } catch {
    throw bodyReadError(exchange);
  }
  return head;
}

/**
 * What reads a relayed body on the side (usage, an error code). Its first fault is reported
 * on the exchange (`accountingFailed`) and reading stops there: the bytes still go to the
 * client as they came, never cut by the gateway's own bookkeeping.
 */
export class SideReader<T> {
  #failed = false;
  readonly #exchange: Exchange;
  readonly #onChunk: (chunk: Uint8Array) => void;
  readonly #onEnd: () => T;

  constructor(exchange: Exchange, onChunk: (chunk: Uint8Array) => void, onEnd: () => T) {
    this.#exchange = exchange;
    this.#onChunk = onChunk;
    this.#onEnd = onEnd;
  }

  chunk(chunk: Uint8Array): void {
    if (this.#failed) return;
    try {
      this.#onChunk(chunk);
    } catch (err) {
      this.#fail(err);
    }
  }

  /** The body ended complete: what `onEnd` makes of it, or undefined after a fault. */
  end(): T | undefined {
    if (this.#failed) return undefined;
    try {
      return this.#onEnd();
    } catch (err) {
      this.#fail(err);
      return undefined;
    }
  }

  #fail(err: unknown): void {
    this.#failed = true;
    this.#exchange.accountingFailed(err);
  }
}

/**
 * The head, then the rest of the body with each chunk shown to the reader, whose `end` runs
 * when the body ended complete (not when it failed or the client cancelled). Returning
 * early (the client cancelled) ends the upstream body too.
 */
export async function* relayed(head: Head, iterator: AsyncIterator<Uint8Array>, reader: SideReader<unknown>): AsyncGenerator<Uint8Array> {
  let ended = head.done;
  try {
    yield* head.chunks;
    if (head.done) return;
    for (;;) {
      const { value, done } = await iterator.next();
      if (done) break;
      reader.chunk(value);
      yield value;
    }
    ended = true;
    reader.end();
  } finally {
    if (!ended) void iterator.return?.()?.catch(() => undefined);
  }
}
