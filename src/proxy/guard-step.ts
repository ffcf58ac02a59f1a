/**
 * Pipeline step 5 (DESIGN.md "One request"): score the client's user messages (and, when
 * `scan` lists `tool`, the tool results it sends back) for prompt injection and flag or
 * block per `guard.injection`. Injected context was already scanned
 * passage by passage in step 4 (a flagged passage dropped or kept there), so the rendered
 * template is not scanned again: it is the operator's own text.
 */
import { GatewayError } from '../errors.js';
import type { InjectionGuard } from '../guard/policy.js';
import type { Exchange } from './exchange.js';

const CLIENT_SOURCES = ['user', 'tool'] as const;

export function guardRequest(guard: InjectionGuard, exchange: Exchange, clientMessages: unknown[]): void {
  for (const source of CLIENT_SOURCES) {
    const decision = guard.scanMessages(clientMessages, source);
    if (!decision) continue;
    noteInjection(exchange, decision.score, decision.flagged);
    if (decision.blocked) {
      throw new GatewayError('prompt_injection_detected', 'The request was blocked by the prompt-injection guard.', { param: 'messages' });
    }
  }
}

/** Records a score on the request (the highest seen wins) and the response header. */
export function noteInjection(exchange: Exchange, score: number, flagged: boolean): void {
  const r = exchange.record;
  if (r.injectionScore === undefined || score > r.injectionScore) {
    r.injectionScore = score;
    exchange.gatewayHeaders['x-promptgate-injection'] = score.toFixed(3);
  }
  r.injectionFlagged = (r.injectionFlagged ?? false) || flagged;
}
