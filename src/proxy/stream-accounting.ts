/**
 * A chat stream's accounting: the relay's callbacks (`RelayOptions`) for one stream, which
 * account it when it ends, with an estimate from the sent body when it brought no usage.
 */
import { NO_TOOL_TOKENS, toolTokensOnce } from '../telemetry/usage.js';
import { finishStream, type EstimatedPrompt } from './accounting.js';
import type { ChatBody } from './chat-request.js';
import type { Exchange } from './exchange.js';
import { parseJsonObject } from './request-shape.js';
import type { RelayOptions, StreamEnd } from './sse-relay.js';
import type { StreamSummary } from './sse-scanner.js';
import type { Upstream } from './upstream.js';

/**
 * The stream relay's callbacks, as methods of one object made outside the handler: a
 * closure in the handler would keep its whole scope (the parsed request, the rendered
 * template) alive for as long as the stream is open, and one closure per callback would
 * cost as much again per open stream. For an estimate when the stream brings no usage, the
 * messages and tool definitions are read again from the body undici keeps anyway (the tools
 * counted in the answering model's encoding, a list seen before only looked up). One per stream.
 */
export class StreamAccounting implements RelayOptions {
  readonly stripUsageChunk: boolean;
  readonly keepText: boolean | undefined;
  readonly secrets: readonly Buffer[];
  readonly #exchange: Exchange;
  readonly #upstream: Upstream;
  readonly #outBody: Uint8Array;

  constructor(exchange: Exchange, upstream: Upstream, sent: { stripUsageChunk: boolean; outBody: Uint8Array }) {
    this.stripUsageChunk = sent.stripUsageChunk;
    this.keepText = exchange.content.captureContent;
    this.secrets = upstream.spec.secrets.bytes;
    this.#exchange = exchange;
    this.#upstream = upstream;
    this.#outBody = sent.outBody;
  }

  get signal(): AbortSignal {
    return this.#exchange.signal;
  }

  abortUpstream(): void {
    this.#exchange.abort();
  }

  clientGone(): boolean {
    return this.#exchange.clientGone;
  }

  timedOut(): boolean {
    const exchange = this.#exchange;
    return exchange.signal.aborted && !exchange.clientGone && !exchange.shuttingDown;
  }

  shuttingDown(): boolean {
    return this.#exchange.shuttingDown;
  }

  onEnd(summary: StreamSummary, end: StreamEnd): void {
    const exchange = this.#exchange;
    try {
      finishStream(exchange, this.#upstream, summary, end, () => promptOf(this.#outBody));
    } catch (err) {
      // The stream's end runs outside any handler: a fault in its accounting would be an
      // uncaught exception, ending the process and every other stream with it. The
      // request is still recorded, without what its accounting could not read.
      exchange.accountingFailed(err);
      exchange.finish(end.outcome === 'error' ? { outcome: 'error', errorType: end.errorType } : { outcome: end.outcome });
    }
  }
}

/** The `messages` and tool definitions of a request body the gateway has already parsed once (or written itself). */
function promptOf(body: Uint8Array): EstimatedPrompt {
  try {
    const sent = parseJsonObject(body) as ChatBody;
    return { messages: Array.isArray(sent.messages) ? sent.messages : [], toolTokens: toolTokensOnce(sent) };
  } catch {
    return { messages: [], toolTokens: NO_TOOL_TOKENS };
  }
}
