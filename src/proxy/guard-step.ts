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
    const content = variableText(value);
    if (content) messages.push({ role: 'user', content });
  }
  if (messages.length > 0) decide(exchange, guard.scanMessages(messages, 'user'), 'prompt_variables');
}

function decide(exchange: Exchange, decision: GuardDecision | undefined, param: string): void {
  if (!decision) return;
  noteInjection(exchange, decision.score, decision.flagged, decision.signals);
  if (decision.blocked) throw new GatewayError('prompt_injection_detected', 'The request was blocked by the prompt-injection guard.', { param });
}

/**
 * The strings of a variable value (a list or object variable's leaves, keys included), one
 * per line, in order and at any depth: the renderer prints all of it (`{{notes}}` is its
 * JSON), so the guard reads all of it. A walk with its own stack, not recursion.
 */
function variableText(value: unknown): string {
  const parts: string[] = [];
  const pending: unknown[] = [value];
  while (pending.length > 0) {
    const v = pending.pop();
    if (typeof v === 'string') {
      if (v !== '') parts.push(v);
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) pending.push(v[i]);
    } else if (typeof v === 'object' && v !== null) {
      const entries = Object.entries(v);
      for (let i = entries.length - 1; i >= 0; i--) pending.push(entries[i][1], entries[i][0]);
    }
  }
  return parts.join('\n');
}

/**
 * Records a score on the request (the highest seen wins) and the response header, and the
 * decision's `signals` (family names, `model`) for the request log: those of every scan of
 * the client's text, each name once. Context passages come without signals (their
 * report carries scores only), so a request whose context alone was scanned has none.
 */
export function noteInjection(exchange: Exchange, score: number, flagged: boolean, signals?: readonly string[]): void {
  const r = exchange.record;
  if (r.injectionScore === undefined || score > r.injectionScore) {
    r.injectionScore = score;
    exchange.gatewayHeaders['x-promptgate-injection'] = score.toFixed(3);
  }
  r.injectionFlagged = (r.injectionFlagged ?? false) || flagged;
  if (signals) r.injectionSignals = [...new Set([...(r.injectionSignals ?? []), ...signals])];
}
