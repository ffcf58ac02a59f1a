/**
 * Pipeline step 5 (DESIGN.md "One request"): score the client's user messages and the
 * template variables it set (and, when `scan` lists `tool`, the tool results it sends back)
 * for prompt injection and flag or block per `guard.injection`. Injected context was
 * already scanned passage by passage in step 4 (a flagged passage dropped or kept there),
 * so the rendered template is not scanned again: apart from those values, it is the
 * operator's own text.
 */
import { GatewayError } from '../errors.js';
import type { GuardDecision, InjectionGuard } from '../guard/policy.js';
import type { Exchange } from './exchange.js';

const CLIENT_SOURCES = ['user', 'tool'] as const;

/**
 * @param clientVariables the template variables the client set (`prompt_variables`,
 *   `x-promptgate-var-*`): they are rendered into the system prompt, so they are scanned as
 *   the client's own text (source `user`), one message per variable.
 */
export function guardRequest(guard: InjectionGuard, exchange: Exchange, clientMessages: unknown[], clientVariables?: Readonly<Record<string, unknown>>): void {
  for (const source of CLIENT_SOURCES) decide(exchange, guard.scanMessages(clientMessages, source), 'messages');
  if (!clientVariables || !guard.scans('user')) return;
  const messages: Array<{ role: 'user'; content: string }> = [];
  for (const value of Object.values(clientVariables)) {
    const content = textOf(value);
    if (content) messages.push({ role: 'user', content });
  }
  if (messages.length > 0) decide(exchange, guard.scanMessages(messages, 'user'), 'prompt_variables');
}

function decide(exchange: Exchange, decision: GuardDecision | undefined, param: string): void {
  if (!decision) return;
  noteInjection(exchange, decision.score, decision.flagged);
  if (decision.blocked) throw new GatewayError('prompt_injection_detected', 'The request was blocked by the prompt-injection guard.', { param });
}

/** The strings of a variable value (a list or object variable's leaves, keys included), one per line. */
function textOf(value: unknown, depth = 0): string {
  if (typeof value === 'string') return value;
  if (typeof value !== 'object' || value === null || depth > 32) return '';
  const parts: string[] = [];
  if (Array.isArray(value)) {
    for (const v of value) parts.push(textOf(v, depth + 1));
  } else {
    for (const [k, v] of Object.entries(value)) parts.push(k, textOf(v, depth + 1));
  }
  return parts.filter((p) => p !== '').join('\n');
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
