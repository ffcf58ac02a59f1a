/**
 * Seeded, randomized end-to-end fuzz of the gateway's accounting: a few hundred requests,
 * each with a behaviour chosen by a fixed-seed PRNG, go through the real gateway (real
 * sockets) to two in-test upstreams (primary, then backup as fallback), driven by the
 * official `openai` client and by raw undici. The test keeps its own ledger of what the
 * gateway must record, following the README's rules (Observability: Prometheus metrics,
 * Cost, Request log; Upstreams: timeouts, retries, fallback, breaker), and compares it
 * with `GET /metrics` and the request log lines:
 *
 * - exact: request counts per label set, attempts, token counts (upstream usage, and the
 *   gateway tokenizer's estimate where the upstream gave none: the test calls the same
 *   `estimateUsage`), unknown-cost counts, histogram counts, log fields, the cost header,
 *   and each request's cost (computed here in integer arithmetic from the README's formula
 *   and price table, not with the gateway's code);
 * - within a few ulps: the exported cost counters against the ledger's exact sums (doubles
 *   accumulate; the check is that they do not drift).
 *
 * Behaviours: non-stream and stream answers with and without usage (cached and reasoning
 * details, null details), compact and Python-spaced JSON, priced, dated-snapshot, vendor-
 * prefixed and unknown models, the backup answering with another model at its own prices,
 * 429/500/502/503 with and without retry-after(-ms) and x-should-retry, 400/404,
 * connection resets before headers, streams cut, stalled past `idle_ms` or ended by an
 * upstream error event (before or after the usage chunk), a first byte slower than
 * `first_byte_ms`, client aborts before headers and mid-
 * stream, and malformed requests. Which behaviour an attempt gets depends only on the
 * request's plan and the attempt's index, never on timing, so the run is deterministic
 * although requests run concurrently (the breaker is off: it would depend on order).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { estimateUsage } from '../src/telemetry/usage.js';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { captureGatewayLog, type GatewayLogCapture } from './helpers/gateway-log.js';
import { PromText, type PromSample } from './telemetry-e2e/prom-text.js';
import { seededRandom } from '../scripts/seeded-random.js';

// Tracing off in this file (its own process): accounting must not depend on it.
for (const name of Object.keys(process.env)) if (name.startsWith('OTEL_')) delete process.env[name];

const SEED = 0x5eed2025;
const N = 420;
const CONCURRENCY = 8;
/** first_byte_ms of both upstreams; a `slow` attempt answers after SLOW_MS. */
const FIRST_BYTE_MS = 1000;
const SLOW_MS = 2500;
/** idle_ms of both upstreams; a stream that stalls sends nothing for SLOW_MS. */
const IDLE_MS = 1000;
/** A stream the client cancels pauses this long after its first word (the cancel comes first). */
const PAUSE_MS = 3000;
const MAX_RETRY_AFTER_MS = 1000;
const RETRY_ON = [429, 500, 502, 503, 504];
const ROUTE = ['primary', 'backup'] as const;
type UpstreamName = (typeof ROUTE)[number];
const RETRIES: Record<UpstreamName, number> = { primary: 2, backup: 1 };
const PROVIDER: Record<UpstreamName, string> = { primary: 'openai', backup: 'acme' };
const CHAT = '/v1/chat/completions';

// ---------------------------------------------------------------------------------------
// Prices, in milli-USD per 1M tokens (integers, so costs are exact): [input, cached, output, reasoning].
// The shipped table (README "Cost"), the config's `pricing:` and the backup's own `pricing:`.
type Price = readonly [input: number, cached: number, output: number, reasoning: number];
const PRICES: Record<string, Price> = {
  'gpt-4o-mini': [150, 75, 600, 600],
  'gpt-4o': [2500, 1250, 10000, 10000],
  'gpt-4o-2024-05-13': [5000, 5000, 15000, 15000], // its own shipped entry, without cached_input
  'gpt-4.1-mini': [400, 100, 1600, 1600],
  'gpt-5-nano': [50, 5, 400, 400],
  'gpt-3.5-turbo': [500, 500, 1500, 1500], // no cached price: cached tokens at input
  o3: [2000, 500, 8000, 12000], // config override with a reasoning price
  'my-finetune': [300, 300, 1200, 1200], // config entry without cached_input
};
/** backup's `pricing: {gpt-4o: {input: 2, output: 8}}` replaces gpt-4o there as a whole. */
const BACKUP_PRICES: Record<string, Price> = { 'gpt-4o': [2000, 2000, 8000, 8000] };
/** The price entry each model name uses (README: dated snapshots, vendor/ prefix), or null: unknown. */
const PRICE_ENTRY: Record<string, string | null> = {
  'gpt-4o-mini': 'gpt-4o-mini',
  'gpt-4o-mini-2024-07-18': 'gpt-4o-mini',
  'openai/gpt-4o-mini': 'gpt-4o-mini',
  'gpt-4o': 'gpt-4o',
  'gpt-4o-2024-08-06': 'gpt-4o',
  'gpt-4o-2024-05-13': 'gpt-4o-2024-05-13',
  'gpt-4.1-mini': 'gpt-4.1-mini',
  'gpt-5-nano': 'gpt-5-nano',
  'gpt-3.5-turbo': 'gpt-3.5-turbo',
  'gpt-3.5-turbo-0125': 'gpt-3.5-turbo',
  o3: 'o3',
  'my-finetune': 'my-finetune',
  'acme-llm-7b': null,
  'gpt-4o-mini-preview': null, // not a dated suffix
  'gpt-4o-mini-2024-13-45': null, // not a date
  'llama-3.1-8b-instruct': null,
  'backup-llm': null,
};
const REQUEST_MODELS = Object.keys(PRICE_ENTRY).filter((m) => m !== 'backup-llm');
/** What an upstream may answer with instead of the requested name. */
const SNAPSHOT_OF: Record<string, string> = { 'gpt-4o-mini': 'gpt-4o-mini-2024-07-18', 'gpt-4o': 'gpt-4o-2024-08-06', 'gpt-3.5-turbo': 'gpt-3.5-turbo-0125' };

function priceOf(upstream: UpstreamName, model: string): Price | null {
  const entry = PRICE_ENTRY[model];
  if (entry === undefined) throw new Error(`model ${model} missing from PRICE_ENTRY`);
  if (entry === null) return null;
  return (upstream === 'backup' ? BACKUP_PRICES[entry] : undefined) ?? PRICES[entry];
}

interface Tokens {
  input: number;
  output: number;
  cached: number;
  reasoning: number;
  estimated: boolean;
}

/** README "Cost": (input − cached) × input + cached × cached_input + (output − reasoning) × output + reasoning × reasoning; in 1e-9 USD. */
function costUnits(t: Tokens, p: Price): bigint {
  const b = BigInt;
  return b(t.input - t.cached) * b(p[0]) + b(t.cached) * b(p[1]) + b(t.output - t.reasoning) * b(p[2]) + b(t.reasoning) * b(p[3]);
}

/** Exact decimal text of `units` × 1e-9 USD, trailing zeros dropped (the header's format). */
function usdText(units: bigint): string {
  if (units === 0n) return '0';
  const s = units.toString().padStart(10, '0');
  const text = `${s.slice(0, -9)}.${s.slice(-9)}`.replace(/0+$/, '').replace(/\.$/, '');
  return text;
}

// ---------------------------------------------------------------------------------------
// Plans


interface UsageObject {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details?: { cached_tokens: number } | null;
  completion_tokens_details?: { reasoning_tokens: number } | null;
}

interface Answer {
  /** The response's `model`; absent: none sent (non-stream only). */
  model?: string;
  usage?: UsageObject;
  words: string[];
  /** Stream: the upstream connection ends after this many events (no usage chunk, no [DONE]). */
  cutAfter?: number;
  /** Stream: after this many events the upstream sends an OpenAI error event and ends. */
  errorAfter?: number;
  /** Stream: after this many events the upstream waits PAUSE_MS (the client cancels meanwhile). */
  pauseAfter?: number;
  /** Stream: after this many events the upstream sends nothing for SLOW_MS (past idle_ms). */
  stallAfter?: number;
  /** Python's json.dumps separators (`", "`, `": "`). */
  spaced: boolean;
}

type Behaviour =
  | { kind: 'ok'; answer: Answer }
  | { kind: 'status'; status: number; headers: Record<string, string> }
  | { kind: 'reset' }
  | { kind: 'slow' }
  | { kind: 'hang' };

interface Plan {
  id: string;
  client: 'openai' | 'undici';
  stream: boolean;
  includeUsage: boolean;
  model: string;
  messages: Array<Record<string, unknown>>;
  invalid: boolean;
  abort?: 'before_headers' | 'mid_stream';
  attempts: Record<UpstreamName, Behaviour[]>;
}

const WORDS = ['Hello', ' there', ' your', ' order', ' ships', ' today', ' — ', 'Grüße', ' 東京', ' 🚚', ' refund', ' in', ' 3', ' days', '.', '\n'];
const MESSAGE_SETS: Array<Array<Record<string, unknown>>> = [
  [{ role: 'user', content: 'hi' }],
  [
    { role: 'system', content: 'You are a support agent for ACME. Be brief.' },
    { role: 'user', content: 'Where is my order #4411? It was due yesterday.' },
  ],
  [
    { role: 'system', content: 'Answer in German.' },
    { role: 'user', name: 'kim', content: 'Wann kommt mein Paket?' },
    { role: 'assistant', content: 'Morgen.' },
    { role: 'user', content: [{ type: 'text', text: 'Und die Rechnung?' }, { type: 'text', text: ' Bitte per Mail.' }] },
  ],
  [{ role: 'user', content: '東京への配送はいつですか？ 🚚 '.repeat(20) }],
];

function makePlans(seed: number, n: number): Plan[] {
  const rnd = seededRandom(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const int = (lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));

  const usage = (): UsageObject | undefined => {
    if (rnd() < 0.25) return undefined;
    const prompt = int(1, 6000);
    const completion = int(0, 3000);
    const u: UsageObject = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
    const details = rnd();
    if (details < 0.6) {
      u.prompt_tokens_details = { cached_tokens: rnd() < 0.5 ? 0 : int(0, prompt) };
      u.completion_tokens_details = { reasoning_tokens: rnd() < 0.5 ? 0 : int(0, completion) };
    } else if (details < 0.8) {
      u.prompt_tokens_details = null;
      u.completion_tokens_details = null;
    }
    return u;
  };

  const answer = (upstream: UpstreamName, model: string, stream: boolean): Answer => {
    let answered = model;
    if (upstream === 'backup' && rnd() < 0.6) answered = pick(['gpt-4o', 'gpt-4o-2024-08-06', 'gpt-4o-2024-05-13', 'backup-llm']);
    else if (SNAPSHOT_OF[model] && rnd() < 0.4) answered = SNAPSHOT_OF[model];
    const a: Answer = { model: !stream && rnd() < 0.05 ? undefined : answered, usage: usage(), words: Array.from({ length: int(1, 8) }, () => pick(WORDS)), spaced: rnd() < 0.2 };
    if (stream) {
      const r = rnd();
      // events: role, one per word, finish, [usage], [DONE]; a cut, error or stall may come
      // before the usage chunk (usage estimated) or after it (usage exact, request failed).
      const last = a.words.length + (a.usage ? 3 : 2);
      if (r < 0.1) a.cutAfter = int(0, last);
      else if (r < 0.15) a.errorAfter = int(1, last);
      else if (r < 0.18) a.stallAfter = int(0, last);
    }
    return a;
  };

  const behaviour = (upstream: UpstreamName, model: string, stream: boolean): Behaviour => {
    const r = rnd();
    if (r < 0.6) return { kind: 'ok', answer: answer(upstream, model, stream) };
    if (r < 0.78) {
      const status = pick([429, 500, 502, 503]);
      const headers: Record<string, string> = {};
      const hint = rnd();
      if (hint < 0.2) headers['retry-after-ms'] = String(int(0, 5));
      else if (hint < 0.4) headers['retry-after'] = '0';
      else if (hint < 0.5) headers['retry-after'] = '5'; // over max_retry_after_ms: not waited for
      if (rnd() < 0.1) headers['x-should-retry'] = 'false';
      return { kind: 'status', status, headers };
    }
    if (r < 0.88) return { kind: 'reset' };
    if (r < 0.92) return { kind: 'slow' };
    return { kind: 'status', status: pick([400, 404]), headers: {} };
  };

  const plans: Plan[] = [];
  for (let i = 0; i < n; i++) {
    const stream = rnd() < 0.5;
    const model = pick(REQUEST_MODELS);
    const plan: Plan = {
      id: `fz-${SEED.toString(16)}-${i}`,
      client: rnd() < 0.5 ? 'openai' : 'undici',
      stream,
      includeUsage: stream && rnd() < 0.5,
      model,
      messages: pick(MESSAGE_SETS),
      invalid: rnd() < 0.03,
      attempts: {
        primary: Array.from({ length: RETRIES.primary + 1 }, () => behaviour('primary', model, stream)),
        backup: Array.from({ length: RETRIES.backup + 1 }, () => behaviour('backup', model, stream)),
      },
    };
    const a = rnd();
    if (!plan.invalid && a < 0.03) {
      plan.abort = 'before_headers';
      plan.attempts.primary[0] = { kind: 'hang' };
    } else if (!plan.invalid && stream && a < 0.1) {
      plan.abort = 'mid_stream';
      const ans = answer('primary', model, true);
      delete ans.cutAfter;
      delete ans.errorAfter;
      delete ans.stallAfter;
      ans.pauseAfter = 2; // the role event and the first word
      plan.attempts.primary[0] = { kind: 'ok', answer: ans };
    } else if (!plan.invalid && a > 0.97) {
      // No upstream can be reached at all: the gateway's own 503 (an answer passed over on
      // the way would have gone to the client instead).
      for (const name of ROUTE) plan.attempts[name] = plan.attempts[name].map(() => ({ kind: 'reset' }) as const);
    }
    if (plan.invalid) plan.client = 'undici';
    plans.push(plan);
  }
  return plans;
}

// ---------------------------------------------------------------------------------------
// The upstream side: what an `ok` answer looks like on the wire

function pyDumps(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(pyDumps).join(', ')}]`;
  if (v !== null && typeof v === 'object') {
    const fields = Object.entries(v).filter(([, x]) => x !== undefined);
    return `{${fields.map(([k, x]) => `${JSON.stringify(k)}: ${pyDumps(x)}`).join(', ')}}`;
  }
  return JSON.stringify(v);
}

const json = (a: Answer, v: unknown) => (a.spaced ? pyDumps(v) : JSON.stringify(v));

/** The SSE events of a stream answer: role, one per word, finish, the usage chunk (when asked and known), [DONE]. */
function streamEvents(a: Answer, id: string, includeUsage: boolean): string[] {
  const withUsage = includeUsage && a.usage !== undefined;
  const base = { id: `chatcmpl-${id}`, object: 'chat.completion.chunk', created: 1_700_000_000, model: a.model };
  const ev = (choice: object) => `data: ${json(a, { ...base, choices: [{ index: 0, ...choice }], ...(withUsage ? { usage: null } : {}) })}\n\n`;
  const events = [ev({ delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null })];
  for (const w of a.words) events.push(ev({ delta: { content: w }, logprobs: null, finish_reason: null }));
  events.push(ev({ delta: {}, logprobs: null, finish_reason: 'stop' }));
  if (withUsage) events.push(`data: ${json(a, { ...base, choices: [], usage: a.usage })}\n\n`);
  events.push('data: [DONE]\n\n');
  return events;
}

function completionBody(a: Answer, id: string): string {
  return json(a, {
    id: `chatcmpl-${id}`,
    object: 'chat.completion',
    created: 1_700_000_000,
    model: a.model,
    choices: [{ index: 0, message: { role: 'assistant', content: a.words.join(''), refusal: null }, logprobs: null, finish_reason: 'stop' }],
    usage: a.usage,
  });
}

const UPSTREAM_ERROR_EVENT = `data: ${JSON.stringify({ error: { message: 'fuzz mid-stream failure', type: 'server_error', param: null, code: 'fuzz_stream_error' } })}\n\n`;
const GATEWAY_IDLE_EVENT = `data: ${JSON.stringify({ error: { message: 'The upstream stopped sending data (idle timeout).', type: 'timeout_error', param: null, code: 'upstream_timeout' } })}\n\n`;
const GATEWAY_CUT_EVENT = `data: ${JSON.stringify({ error: { message: 'The upstream connection failed during the stream.', type: 'server_error', param: null, code: 'upstream_error' } })}\n\n`;

interface FuzzUpstream {
  url: string;
  /** Per request id: the bodies received, in order. */
  received: Map<string, any[]>;
  /** Attempts no plan foresaw (the gateway tried more often than the README's rules say). */
  unexpected: string[];
  close(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startFuzzUpstream(name: UpstreamName, plans: ReadonlyMap<string, Plan>): Promise<FuzzUpstream> {
  const state: FuzzUpstream = { url: '', received: new Map(), unexpected: [], close: async () => undefined };
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    const id = String(req.headers['x-fuzz-id']);
    const seen = state.received.get(id) ?? [];
    seen.push(body);
    state.received.set(id, seen);
    const behaviour = plans.get(id)?.attempts[name][seen.length - 1];
    if (!behaviour) {
      state.unexpected.push(`${name}: attempt ${seen.length} of ${id}`);
      res.writeHead(418, { 'content-type': 'application/json' }).end('{"error":{"message":"unexpected attempt","type":"fuzz","param":null,"code":null}}');
      return;
    }
    try {
      await serve(req, res, behaviour, id, body);
    } catch {
      res.destroy();
    }
  });
  server.keepAliveTimeout = 60_000; // never close an idle socket the gateway is about to reuse
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  state.close = async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return state;
}

async function serve(req: IncomingMessage, res: ServerResponse, b: Behaviour, id: string, body: any): Promise<void> {
  const headers = { 'x-request-id': `req_${id}`, 'openai-processing-ms': '3' };
  switch (b.kind) {
    case 'reset':
      req.socket.destroy();
      return;
    case 'slow':
    case 'hang':
      await sleep(SLOW_MS);
      if (!res.destroyed) res.writeHead(200, { 'content-type': 'application/json' }).end(completionBody({ model: 'gpt-4o-mini', words: ['late'], spaced: false }, id));
      return;
    case 'status': {
      const type = b.status === 429 ? 'rate_limit_error' : b.status >= 500 ? 'server_error' : 'invalid_request_error';
      res.writeHead(b.status, { ...headers, ...b.headers, 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: `fuzz ${b.status}`, type, param: null, code: null } }));
      return;
    }
    case 'ok':
      break;
  }
  const a = b.answer;
  if (!body.stream) {
    res.writeHead(200, { ...headers, 'content-type': 'application/json' }).end(completionBody(a, id));
    return;
  }
  const events = streamEvents(a, id, body.stream_options?.include_usage === true);
  res.writeHead(200, { ...headers, 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.flushHeaders(); // a stream cut before its first event still had its 200
  for (let i = 0; i < events.length; i++) {
    if (res.destroyed) return;
    if (i === a.cutAfter) {
      await sleep(20); // let the written events leave before the connection ends
      req.socket.destroy();
      return;
    }
    if (i === a.errorAfter) {
      res.end(UPSTREAM_ERROR_EVENT);
      return;
    }
    if (i === a.stallAfter) {
      await sleep(SLOW_MS);
      res.destroy();
      return;
    }
    if (i === a.pauseAfter) {
      await sleep(PAUSE_MS);
      if (res.destroyed) return;
    }
    res.write(events[i]);
    if (i % 3 === 2) await new Promise((r) => setImmediate(r));
  }
  res.end();
}

// ---------------------------------------------------------------------------------------
// The ledger: what the gateway must record for one plan

interface Expected {
  status: number;
  outcome: 'ok' | 'error' | 'client_abort';
  errorType: string; // '' for a success
  upstream: string;
  provider: string;
  attempts: number;
  /** Attempts per upstream tried. */
  attemptsBy?: Partial<Record<UpstreamName, number>>;
  stream: boolean;
  /** The label's model (the request's). */
  model: string;
  responseModel?: string;
  usage?: Tokens;
  /** 1e-9 USD; null: unknown price; undefined: no usage. */
  cost?: bigint | null;
  /** The answer the client gets and who sent it (ok paths). */
  answer?: Answer;
  answeredBy?: UpstreamName;
  /** Stream: the number of upstream events relayed before the end. */
  eventsSent?: number;
  /** An error code the gateway itself answers with. */
  code?: string;
}

function tokensOf(u: UsageObject): Tokens {
  const input = u.prompt_tokens;
  const output = u.completion_tokens;
  return {
    input,
    output,
    cached: Math.min(u.prompt_tokens_details?.cached_tokens ?? 0, input),
    reasoning: Math.min(u.completion_tokens_details?.reasoning_tokens ?? 0, output),
    estimated: false,
  };
}

function estimate(plan: Plan, text: string, model: string): Tokens {
  const e = estimateUsage(plan.messages, text, model);
  expect(e.estimated).toBe(true);
  return { input: e.inputTokens, output: e.outputTokens, cached: 0, reasoning: 0, estimated: true };
}

function retryAfterMs(h: Record<string, string>): number | undefined {
  if (h['retry-after-ms'] !== undefined) return Number(h['retry-after-ms']);
  if (h['retry-after'] !== undefined) return Number(h['retry-after']) * 1000;
  return undefined;
}

/** README "Upstreams: timeouts, retries, fallback, breaker", with the breaker off. */
function expectedOf(plan: Plan): Expected {
  const base = { stream: plan.stream, model: plan.model };
  if (plan.invalid) return { ...base, stream: false, model: '', status: 400, outcome: 'error', errorType: 'invalid_request', upstream: '', provider: '', attempts: 0, code: 'invalid_request' };
  let attempts = 0;
  const attemptsBy: Partial<Record<UpstreamName, number>> = {};
  let lastFailure: 'connect' | 'timeout' | undefined;
  let upstream: UpstreamName = 'primary';
  // The last retryable answer given up on for the next upstream: the client's if no later upstream answers.
  let passedOver: { status: number; upstream: UpstreamName } | undefined;
  // This upstream's last retryable answer, being retried: passed over should its retries fail.
  let retried: { status: number; upstream: UpstreamName } | undefined;
  const failed = (status: number, errorType: string, outcome: Expected['outcome'] = 'error', code?: string, by: UpstreamName = upstream): Expected => ({
    ...base,
    status,
    outcome,
    errorType,
    upstream: by,
    provider: PROVIDER[by],
    attempts,
    attemptsBy: { ...attemptsBy },
    code,
  });
  for (let u = 0; u < ROUTE.length; u++) {
    upstream = ROUTE[u];
    const isLast = u === ROUTE.length - 1;
    tries: for (let attempt = 0; attempt <= RETRIES[upstream]; attempt++) {
      attempts++;
      attemptsBy[upstream] = (attemptsBy[upstream] ?? 0) + 1;
      const b = plan.attempts[upstream][attempt];
      switch (b.kind) {
        case 'hang':
          return failed(499, 'client_abort', 'client_abort');
        case 'reset':
          lastFailure = 'connect'; // retried (backoff) while attempts are left, then the next upstream
          continue;
        case 'slow':
          lastFailure = 'timeout'; // a first-byte timeout moves on at once
          break tries;
        case 'status': {
          if (!RETRY_ON.includes(b.status)) return failed(b.status, `upstream_${b.status}`);
          const asked = retryAfterMs(b.headers);
          const canRetry = attempt < RETRIES[upstream] && b.headers['x-should-retry'] !== 'false' && (asked === undefined || asked <= MAX_RETRY_AFTER_MS);
          if (!canRetry && isLast) return failed(b.status, `upstream_${b.status}`);
          retried = { status: b.status, upstream };
          if (!canRetry) break tries;
          continue;
        }
        case 'ok':
          return { ...answered(plan, upstream, attempts, b.answer), attemptsBy: { ...attemptsBy } };
      }
    }
    passedOver = retried ?? passedOver;
    retried = undefined;
  }
  if (passedOver) return failed(passedOver.status, `upstream_${passedOver.status}`, 'error', undefined, passedOver.upstream);
  return lastFailure === 'timeout' ? failed(504, 'upstream_timeout', 'error', 'upstream_timeout') : failed(503, 'upstream_unavailable', 'error', 'upstream_unavailable');
}

function answered(plan: Plan, upstream: UpstreamName, attempts: number, a: Answer): Expected {
  const e: Expected = { stream: plan.stream, model: plan.model, status: 200, outcome: 'ok', errorType: '', upstream, provider: PROVIDER[upstream], attempts, answer: a, answeredBy: upstream };
  if (!plan.stream) {
    e.responseModel = a.model;
    e.usage = a.usage ? tokensOf(a.usage) : estimate(plan, a.words.join(''), a.model ?? plan.model);
  } else {
    const events = streamEvents(a, plan.id, true).length;
    const sent = plan.abort === 'mid_stream' ? a.pauseAfter! : (a.cutAfter ?? a.errorAfter ?? a.stallAfter ?? events);
    e.eventsSent = sent;
    e.responseModel = sent > 0 ? a.model : undefined;
    const text = a.words.slice(0, Math.max(0, Math.min(sent - 1, a.words.length))).join('');
    if (a.usage && sent > a.words.length + 2) e.usage = tokensOf(a.usage); // the usage chunk came
    else e.usage = estimate(plan, text, e.responseModel ?? plan.model);
    if (plan.abort === 'mid_stream') Object.assign(e, { outcome: 'client_abort', errorType: 'client_abort' });
    else if (a.stallAfter !== undefined) Object.assign(e, { outcome: 'error', errorType: 'idle_timeout' });
    else if (sent < events) Object.assign(e, { outcome: 'error', errorType: 'upstream_stream_error' });
  }
  const price = priceOf(upstream, e.responseModel ?? plan.model);
  e.cost = price === null ? null : costUnits(e.usage, price);
  return e;
}

// ---------------------------------------------------------------------------------------
// Clients

interface Seen {
  status: number;
  costHeader?: string;
  /** Non-stream: the content; stream: the content deltas joined. */
  content?: string;
  /** Raw undici stream bytes. */
  raw?: string;
  /** Usage objects the client saw (stream chunks or body). */
  usage: unknown[];
  /** Chunks that carried a `usage` field at all (openai-node streams). */
  usageFields: number;
  errorCode?: string | null;
}

function headersFor(plan: Plan): Record<string, string> {
  return { 'x-request-id': plan.id, 'x-fuzz-id': plan.id };
}

function requestBody(plan: Plan): Record<string, unknown> {
  const body: Record<string, unknown> = { model: plan.model, messages: plan.messages };
  if (plan.stream) body.stream = true;
  if (plan.includeUsage) body.stream_options = { include_usage: true };
  return body;
}

async function viaOpenAI(client: OpenAI, plan: Plan): Promise<Seen> {
  const ac = new AbortController();
  const timer = plan.abort === 'before_headers' ? setTimeout(() => ac.abort(), 150) : undefined;
  const seen: Seen = { status: 0, usage: [], usageFields: 0 };
  try {
    if (!plan.stream) {
      const { data, response } = await client.chat.completions
        .create(requestBody(plan) as any, { headers: headersFor(plan), signal: ac.signal })
        .withResponse();
      seen.status = response.status;
      seen.costHeader = response.headers.get('x-promptgate-cost-usd') ?? undefined;
      seen.content = data.choices[0]?.message?.content ?? undefined;
      if (data.usage) seen.usage.push(data.usage);
      return seen;
    }
    const { data: stream, response } = await client.chat.completions
      .create(requestBody(plan) as any, { headers: headersFor(plan), signal: ac.signal })
      .withResponse();
    seen.status = response.status;
    seen.costHeader = response.headers.get('x-promptgate-cost-usd') ?? undefined;
    seen.content = '';
    const first = plan.attempts.primary[0];
    for await (const chunk of stream as unknown as AsyncIterable<any>) {
      if ('usage' in chunk) seen.usageFields++;
      if (chunk.usage) seen.usage.push(chunk.usage);
      seen.content += chunk.choices[0]?.delta?.content ?? '';
      if (plan.abort === 'mid_stream' && first.kind === 'ok' && seen.content === first.answer.words[0]) break; // cancels the stream
    }
    return seen;
  } catch (err) {
    if (err instanceof OpenAI.APIError) {
      if (seen.status === 0) seen.status = err.status ?? 0;
      seen.errorCode = (err as any).code ?? (err.error as any)?.code ?? null;
      return seen;
    }
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

async function viaUndici(base: string, plan: Plan): Promise<Seen> {
  const ac = new AbortController();
  const timer = plan.abort === 'before_headers' ? setTimeout(() => ac.abort(), 150) : undefined;
  const seen: Seen = { status: 0, usage: [], usageFields: 0 };
  const body = plan.invalid ? JSON.stringify({ model: plan.model, messages: [] }) : JSON.stringify(requestBody(plan));
  try {
    const res = await request(`${base}${CHAT}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer sk-fuzz-client', ...headersFor(plan) },
      body,
      signal: ac.signal,
    });
    seen.status = res.statusCode;
    const cost = res.headers['x-promptgate-cost-usd'];
    seen.costHeader = typeof cost === 'string' ? cost : undefined;
    const first = plan.attempts.primary[0];
    let raw = '';
    for await (const chunk of res.body) {
      raw += String(chunk);
      if (plan.abort === 'mid_stream' && first.kind === 'ok' && raw.includes(JSON.stringify(first.answer.words[0]))) {
        ac.abort();
        break;
      }
    }
    seen.raw = raw;
    if (!plan.stream || seen.status !== 200) {
      const obj = JSON.parse(raw);
      if (seen.status === 200) {
        seen.content = obj.choices[0].message.content;
        if (obj.usage) seen.usage.push(obj.usage);
      } else seen.errorCode = obj.error?.code ?? null;
    }
    return seen;
  } catch (err) {
    if ((err as Error).name === 'AbortError' || (err as { code?: string }).code === 'UND_ERR_ABORTED') return seen;
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** The client-visible checks of one request; problems go to `problems`. */
function checkClient(plan: Plan, e: Expected, seen: Seen, problems: string[]): void {
  const bad = (what: string, got: unknown, want: unknown): void => void problems.push(`${plan.id} (${plan.client}${plan.stream ? ', stream' : ''}): ${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  if (e.outcome === 'client_abort') return;
  if (seen.status !== e.status) return bad('status', seen.status, e.status);
  if (e.code && seen.errorCode !== e.code) bad('error code', seen.errorCode, e.code);
  if (e.status !== 200) return;
  const a = e.answer!;
  if (!plan.stream) {
    if (seen.content !== a.words.join('')) bad('content', seen.content, a.words.join(''));
    const header = typeof e.cost === 'bigint' ? usdText(e.cost) : undefined;
    if (seen.costHeader !== header) bad('x-promptgate-cost-usd', seen.costHeader, header);
    const usage = a.usage ? [JSON.parse(JSON.stringify(a.usage))] : [];
    if (JSON.stringify(seen.usage) !== JSON.stringify(usage)) bad('usage in the body', seen.usage, usage);
    return;
  }
  if (seen.costHeader !== undefined) bad('x-promptgate-cost-usd on a stream', seen.costHeader, undefined);
  // What the client gets: the upstream's events, without the usage chunk and the
  // "usage":null fields when the gateway asked for them itself (README "Streaming").
  const events = streamEvents(a, plan.id, true).slice(0, e.eventsSent);
  const strip = !plan.includeUsage;
  const usageNull = a.spaced ? ', "usage": null' : ',"usage":null';
  const usageChunk = a.usage ? a.words.length + 2 : -1; // its index in the events
  const relayed = events.filter((_ev, i) => !(strip && i === usageChunk));
  const expectedRaw =
    relayed.map((ev) => (strip ? ev.replace(usageNull, '') : ev)).join('') +
    (a.cutAfter !== undefined ? GATEWAY_CUT_EVENT : '') +
    (a.errorAfter !== undefined ? UPSTREAM_ERROR_EVENT : '') +
    (a.stallAfter !== undefined ? GATEWAY_IDLE_EVENT : '');
  if (seen.raw !== undefined && seen.raw !== expectedRaw) bad('stream bytes', seen.raw, expectedRaw);
  const text = a.words.slice(0, Math.max(0, Math.min(e.eventsSent! - 1, a.words.length))).join('');
  if (seen.raw === undefined && seen.content !== text) bad('streamed content', seen.content, text);
  const usageSeen = plan.includeUsage && a.usage && e.eventsSent! > usageChunk ? [a.usage] : [];
  if (seen.raw === undefined) {
    if (JSON.stringify(seen.usage) !== JSON.stringify(usageSeen)) bad('usage chunks', seen.usage, usageSeen);
    if (strip && seen.usageFields !== 0) bad('chunks with a usage field (not asked for)', seen.usageFields, 0);
  }
}

// ---------------------------------------------------------------------------------------
// Metrics helpers

const EMPTY_SELECTION = { template: '', template_version: '', experiment: '', variant: '' };

function keyOf(labels: Record<string, string>): string {
  return JSON.stringify(Object.keys(labels).sort().map((k) => [k, labels[k]]));
}

function add(map: Map<string, number>, labels: Record<string, string>, v: number): void {
  const k = keyOf(labels);
  map.set(k, (map.get(k) ?? 0) + v);
}

function exported(samples: PromSample[], drop: string[] = []): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of samples) {
    const labels = { ...s.labels };
    for (const d of drop) delete labels[d];
    add(out, labels, s.value);
  }
  return out;
}

function sorted(m: Map<string, number>): Array<[string, number]> {
  return [...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

// ---------------------------------------------------------------------------------------

const plans = makePlans(SEED, N);
const byId = new Map(plans.map((p) => [p.id, p]));
const ledger = new Map(plans.map((p) => [p.id, expectedOf(p)]));

let primary: FuzzUpstream;
let backup: FuzzUpstream;
let gw: TestGateway;
let gatewayLog: GatewayLogCapture;

beforeAll(async () => {
  // The request log goes to stdout: keep its request lines.
  gatewayLog = captureGatewayLog();
  primary = await startFuzzUpstream('primary', byId);
  backup = await startFuzzUpstream('backup', byId);
  const timeout = `{connect_ms: 2000, first_byte_ms: ${FIRST_BYTE_MS}, idle_ms: ${IDLE_MS}, total_ms: 15000}`;
  gw = await startTestGateway(`
server: {host: 127.0.0.1, drain_timeout_ms: 2000}
logging: {level: info, requests: true}
templates: {dir: templates}
pricing:
  my-finetune: {input: 0.3, output: 1.2}
  o3: {input: 2, cached_input: 0.5, output: 8, reasoning: 12}
upstreams:
  - name: primary
    base_url: ${primary.url}
    api_key: sk-fuzz-primary-0000000000
    timeout: ${timeout}
    retry: {attempts: ${RETRIES.primary}, backoff_ms: 2, max_backoff_ms: 10, max_retry_after_ms: ${MAX_RETRY_AFTER_MS}}
    breaker: {failures: 0}
  - name: backup
    base_url: ${backup.url}
    provider: acme
    api_key: sk-fuzz-backup-00000000000
    timeout: ${timeout}
    retry: {attempts: ${RETRIES.backup}, backoff_ms: 2, max_backoff_ms: 10, max_retry_after_ms: ${MAX_RETRY_AFTER_MS}}
    breaker: {failures: 0}
    pricing:
      gpt-4o: {input: 2, output: 8}
routing: {default: [primary, backup]}
`);
});

afterAll(async () => {
  await gw?.close();
  await primary?.close();
  await backup?.close();
  gatewayLog.restore();
});

async function metrics(): Promise<PromText> {
  const res = await request(`${gw.url}/metrics`);
  return new PromText(await res.body.text());
}

describe(`accounting fuzz (seed ${SEED.toString(16)}, ${N} requests)`, () => {
  it('the plans cover every behaviour', () => {
    const kinds = new Set<string>();
    for (const [id, e] of ledger) {
      const p = byId.get(id)!;
      kinds.add(`${e.errorType || 'ok'}/${e.stream ? 'stream' : 'json'}`);
      kinds.add(e.errorType);
      if (e.usage?.estimated) kinds.add('estimated');
      if (e.cost === null) kinds.add('unknown cost');
      if (e.answeredBy === 'backup') kinds.add('fallback');
      if (e.attempts > 1) kinds.add('retried');
      if (e.upstream === 'primary' && (e.attemptsBy?.backup ?? 0) > 0 && e.errorType.startsWith('upstream_')) kinds.add('passed-over answer');
      if (p.abort) kinds.add(p.abort);
      if (e.usage && (e.usage.cached > 0 || e.usage.reasoning > 0)) kinds.add('details');
    }
    expect([...kinds].some((k) => /^upstream_(429|5\d\d)$/.test(k)), 'an upstream 429/5xx answer reaches the client').toBe(true);
    console.info(`accounting fuzz: kinds ${[...kinds].sort().join(', ')}`);
    for (const k of ['ok/json', 'ok/stream', 'estimated', 'unknown cost', 'fallback', 'retried', 'before_headers', 'mid_stream', 'details', 'upstream_stream_error/stream', 'idle_timeout/stream', 'upstream_timeout', 'upstream_unavailable', 'client_abort/stream', 'invalid_request/json', 'passed-over answer']) {
      expect(kinds, k).toContain(k);
    }
  });

  it('every number the gateway reports matches the ledger', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-fuzz-client', maxRetries: 0, timeout: 20_000 });
    const problems: string[] = [];
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < plans.length; i = next++) {
        const plan = plans[i];
        const seen = plan.client === 'openai' ? await viaOpenAI(client, plan) : await viaUndici(gw.url, plan);
        checkClient(plan, ledger.get(plan.id)!, seen, problems);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));

    // Cancelled requests are accounted when the gateway sees the close: wait for all N.
    let m = await metrics();
    for (const until = Date.now() + 5000; (m.sum('promptgate_requests_total') ?? 0) < N && Date.now() < until; ) {
      await sleep(25);
      m = await metrics();
    }

    // The upstreams saw exactly the attempts the README's retry rules allow.
    expect([...primary.unexpected, ...backup.unexpected]).toEqual([]);
    for (const [id, e] of ledger) {
      const made = (primary.received.get(id)?.length ?? 0) + (backup.received.get(id)?.length ?? 0);
      if (made !== e.attempts) problems.push(`${id}: upstream attempts ${made}, want ${e.attempts}`);
      // The gateway always asks a stream for its usage.
      for (const b of [...(primary.received.get(id) ?? []), ...(backup.received.get(id) ?? [])]) {
        if (b.stream && b.stream_options?.include_usage !== true) problems.push(`${id}: stream sent without include_usage`);
      }
    }
    expect(problems).toEqual([]);

    const expected = [...ledger.values()];
    const sel = (e: Expected) => ({ gen_ai_provider_name: e.provider, gen_ai_request_model: e.model, upstream: e.upstream, ...EMPTY_SELECTION });

    // promptgate_requests_total: every request in exactly one series, with its labels.
    const requests = new Map<string, number>();
    for (const e of expected) {
      add(requests, {
        route: CHAT,
        status_class: `${Math.floor(e.status / 100)}xx`,
        error_type: e.errorType,
        ...sel(e),
        stream: String(e.stream),
        estimated: String(e.usage?.estimated ?? false),
      }, 1);
    }
    expect(sorted(exported(m.select('promptgate_requests_total')))).toEqual(sorted(requests));
    expect(m.sum('promptgate_requests_total')).toBe(N);

    // promptgate_tokens_total by type; the cache_read and reasoning series exist once non-zero.
    const tokens = new Map<string, number>();
    for (const e of expected) {
      if (!e.usage) continue;
      const labels = { ...sel(e), estimated: String(e.usage.estimated) };
      add(tokens, { ...labels, gen_ai_token_type: 'input' }, e.usage.input);
      add(tokens, { ...labels, gen_ai_token_type: 'output' }, e.usage.output);
      if (e.usage.cached > 0) add(tokens, { ...labels, gen_ai_token_type: 'cache_read' }, e.usage.cached);
      if (e.usage.reasoning > 0) add(tokens, { ...labels, gen_ai_token_type: 'reasoning' }, e.usage.reasoning);
    }
    expect(sorted(exported(m.select('promptgate_tokens_total')))).toEqual(sorted(tokens));

    // promptgate_cost_unknown_total: requests with usage whose model has no price.
    const unknown = new Map<string, number>();
    for (const e of expected) if (e.usage && e.cost === null) add(unknown, { upstream: e.upstream, gen_ai_provider_name: e.provider, gen_ai_request_model: e.model }, 1);
    expect(sorted(exported(m.select('promptgate_cost_unknown_total')))).toEqual(sorted(unknown));

    // promptgate_cost_usd_total: per series, against the exact sum in 1e-9 USD.
    const cost = new Map<string, { units: bigint; n: number }>();
    let totalUnits = 0n;
    let priced = 0;
    for (const e of expected) {
      if (typeof e.cost !== 'bigint') continue;
      const k = keyOf({ ...sel(e), estimated: String(e.usage!.estimated) });
      const c = cost.get(k) ?? { units: 0n, n: 0 };
      c.units += e.cost;
      c.n++;
      cost.set(k, c);
      totalUnits += e.cost;
      priced++;
    }
    const costSeries = exported(m.select('promptgate_cost_usd_total'));
    expect([...costSeries.keys()].sort()).toEqual([...cost.keys()].sort());
    let worstUlps = 0;
    for (const [k, want] of cost) {
      const got = costSeries.get(k)!;
      const exact = Number(usdText(want.units));
      const ulps = Math.abs(got - exact) / ulp(exact || Number.MIN_VALUE);
      worstUlps = Math.max(worstUlps, ulps);
      // Summing n doubles, each within half an ulp of its exact value, is off by at most ~n ulps.
      expect(ulps, `${k}: ${got} vs exact ${usdText(want.units)} over ${want.n} requests`).toBeLessThanOrEqual(Math.max(2, want.n));
    }
    const exactTotal = Number(usdText(totalUnits));
    const gotTotal = [...costSeries.values()].reduce((a, b) => a + b, 0);
    expect(Math.abs(gotTotal - exactTotal) / ulp(exactTotal), `total ${gotTotal} vs exact ${usdText(totalUnits)}`).toBeLessThanOrEqual(priced);
    console.info(`accounting fuzz: ${priced} priced requests, exact total ${usdText(totalUnits)} USD, exported ${gotTotal}; worst series off by ${worstUlps.toFixed(1)} ulp`);

    // promptgate_upstream_attempts_total: every attempt (first tries, retries), under the
    // upstream it was made on (a fallback's attempts are its own).
    const attempts = new Map<string, number>();
    for (const e of expected) {
      for (const [u, n] of Object.entries(e.attemptsBy ?? {}) as Array<[UpstreamName, number]>) add(attempts, { upstream: u, gen_ai_provider_name: PROVIDER[u] }, n);
    }
    expect(sorted(exported(m.select('promptgate_upstream_attempts_total')))).toEqual(sorted(attempts));

    // Histograms: one duration observation per request that reached an upstream; token
    // usage per request with usage (its _sum is the token counters' sum); a first chunk per
    // streamed 200. _bucket{le="+Inf"} is _count, buckets never decrease.
    const op = (e: Expected) => ({ gen_ai_operation_name: 'chat', ...sel(e) });
    const duration = new Map<string, number>();
    const usageCount = new Map<string, number>();
    const usageSum = new Map<string, number>();
    const firstChunk = new Map<string, number>();
    for (const e of expected) {
      if (e.attempts === 0) continue;
      add(duration, { ...op(e), error_type: e.errorType, stream: String(e.stream) }, 1);
      if (e.usage) {
        for (const [type, v] of [['input', e.usage.input], ['output', e.usage.output]] as const) {
          add(usageCount, { ...op(e), gen_ai_token_type: type }, 1);
          add(usageSum, { ...op(e), gen_ai_token_type: type }, v);
        }
      }
      // The time to first chunk of a stream that sent one (none came: no start to time).
      if (e.stream && e.status === 200 && (e.eventsSent ?? 0) > 0) add(firstChunk, op(e), 1);
    }
    expect(sorted(exported(m.select('gen_ai_client_operation_duration_seconds_count')))).toEqual(sorted(duration));
    expect(sorted(exported(m.select('gen_ai_client_token_usage_count')))).toEqual(sorted(usageCount));
    expect(sorted(exported(m.select('gen_ai_client_token_usage_sum')))).toEqual(sorted(usageSum));
    expect(sorted(exported(m.select('gen_ai_client_operation_time_to_first_chunk_seconds_count')))).toEqual(sorted(firstChunk));
    for (const family of ['gen_ai_client_operation_duration_seconds', 'gen_ai_client_token_usage', 'gen_ai_client_operation_time_to_first_chunk_seconds']) {
      const counts = exported(m.select(`${family}_count`));
      const buckets = m.select(`${family}_bucket`);
      expect(sorted(exported(buckets.filter((b) => b.labels.le === '+Inf'), ['le']))).toEqual(sorted(counts));
      const series = new Map<string, PromSample[]>();
      for (const b of buckets) {
        const { le: _le, ...rest } = b.labels;
        const k = keyOf(rest);
        series.set(k, [...(series.get(k) ?? []), b]);
      }
      for (const [k, bs] of series) {
        const values = bs.sort((x, y) => Number(x.labels.le) - Number(y.labels.le)).map((b) => b.value);
        expect(values, `${family} ${k}`).toEqual([...values].sort((x, y) => x - y));
      }
      for (const s of m.select(`${family}_sum`)) expect(s.value).toBeGreaterThanOrEqual(0);
    }

    // The request log: one line per request, fields as in the ledger.
    const lines = gatewayLog.requests.filter((l) => l.route === CHAT);
    expect(lines).toHaveLength(N);
    const logProblems: string[] = [];
    for (const line of lines) {
      const e = ledger.get(line.request_id);
      if (!e) {
        logProblems.push(`log line for an unknown request ${line.request_id}`);
        continue;
      }
      const want: Record<string, unknown> = {
        status: e.status,
        outcome: e.outcome,
        error_type: e.errorType || undefined,
        stream: e.stream,
        upstream: e.upstream || undefined,
        provider: e.provider || undefined,
        model: e.model || undefined,
        response_model: e.responseModel,
        attempts: e.attempts,
        input_tokens: e.usage?.input,
        output_tokens: e.usage?.output,
        cached_input_tokens: e.usage?.cached || undefined,
        reasoning_tokens: e.usage?.reasoning || undefined,
        tokens_estimated: e.usage?.estimated || undefined,
        cost_usd: typeof e.cost === 'bigint' ? Number(usdText(e.cost)) : e.cost,
      };
      for (const [k, v] of Object.entries(want)) {
        if (JSON.stringify(line[k]) !== JSON.stringify(v)) logProblems.push(`${line.request_id}: log ${k}: got ${JSON.stringify(line[k])}, want ${JSON.stringify(v)}`);
      }
    }
    expect(new Set(lines.map((l) => l.request_id)).size).toBe(N);
    expect(logProblems).toEqual([]);
    expect(gatewayLog.others.filter((l) => l.includes('"level":"error"'))).toEqual([]);
  });
});

/** The distance from `x` to the next double up. */
function ulp(x: number): number {
  const buf = new DataView(new ArrayBuffer(8));
  buf.setFloat64(0, Math.abs(x));
  buf.setBigUint64(0, buf.getBigUint64(0) + 1n);
  return buf.getFloat64(0) - Math.abs(x);
}
