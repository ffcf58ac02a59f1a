/**
 * Server-sent events as an OpenAI-compatible upstream writes them, for canned upstreams.
 * HTML Living Standard §9.2: an event is its `data:` line and a blank line.
 */

/** One `data:` event: a string as it is (e.g. `'[DONE]'`), anything else as JSON. */
export function sseEvent(data: unknown): string {
  return `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;
}

/** Each value as its own `data:` event, in order (one string a write, to send a stream in pieces). */
export function sseEvents(...data: unknown[]): string[] {
  return data.map(sseEvent);
}

/** A whole stream body: each value as a `data:` event, then `data: [DONE]`. */
export function sseStream(data: unknown[]): string {
  return sseEvents(...data, '[DONE]').join('');
}
