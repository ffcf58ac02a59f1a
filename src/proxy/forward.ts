/**
 * Sends a request along an ordered list of upstreams until one answers.
 *
 * Order of concerns, per upstream in the list:
 *   1. breaker: an open breaker skips the upstream (no attempt made);
 *   2. attempt: one call through the upstream's client (its own timeouts);
 *   3. retry on the same upstream: connection errors and `retry.on_status` responses, with
 *      backoff + jitter or the server's `retry-after(-ms)`, up to `retry.attempts` times;
 *   4. fallback: a first-byte timeout, exhausted retries, a retry-after too long, or a wait
 *      (retry-after or backoff) that would end after the total deadline move on to the next
 *      upstream. An answer given up on that way is kept (its body read): when no later
 *      upstream answers, it goes to the client rather than a gateway error. So is an answer
 *      whose retries failed (a hang until the total deadline, no first byte in time, a
 *      connection error) or did not go out (the breaker refused them).
 * A request that waits for one of the upstream's `connections` (all busy) has not reached
 * the upstream: `total_ms` running out in that wait (or on a request sent late after it) does
 * not count against the breaker (`PooledAttempt` in upstream.ts). The first-byte timeout
 * starts when the request is written, so it always gave the upstream its whole time.
 * A response outside `on_status` (2xx, 4xx, most 5xx you did not list) is returned at once;
 * with `readWhole` (a non-stream answer) its body is read first, and a body cut off (reset,
 * idle timeout) fails the attempt like a connection error (an idle timeout like a first-byte
 * one). All of this happens before any byte reaches the client, so retrying is always safe.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { GatewayError } from '../errors.js';
import type { Runtime } from '../runtime.js';
import { maskSecrets } from './headers.js';
import { backoffDelay, retryAfterMs } from './retry.js';
import { classifyTransportError, type Upstream, type UpstreamRequest, type UpstreamResponse } from './upstream.js';
import { readWholeBody } from './upstream-body.js';

export interface ForwardOptions {
  runtime: Runtime;
  /** Upstream names, in order. */
  route: readonly string[];
  /** Builds the request for one upstream (auth and extra headers differ per upstream). */
  build: (upstream: Upstream) => UpstreamRequest;
  /** Aborted when the client leaves, the total deadline passes or the gateway shuts down. */
  signal: AbortSignal;
  /** The body can be sent only once (streamed): one attempt, no retry, no fallback. */
  once?: boolean;
  /**
   * When `signal` aborts for the total timeout (`performance.now()` clock). A wait that would
   * end after it is not made: the answer in hand goes on (or the next upstream is tried),
   * rather than a 504 at the deadline.
   */
  deadline?: number;
  /**
   * Why `signal` aborted, as the error to throw (`Exchange.abortError`): the client left, the
   * drain ended, or the total timeout, which is said with `timeoutMessage`.
   */
  abortError: (timeoutMessage: string) => Error;
  /**
   * Read the answer's body inside the attempt, up to this many bytes (a non-stream answer,
   * which the caller reads whole anyway): a body the upstream cuts off is retried rather
   * than answered 502. Past the limit: 502 `upstream_error`, no retry.
   */
  readWhole?: number;
  /**
   * Called before each attempt, so accounting knows attempts even when forwarding fails; and
   * once more with the upstream whose answer is returned when that is not the last one tried
   * (an answer passed over for a fallback that then failed), so accounting names it.
   */
  onAttempt?: (upstream: Upstream, attempts: number) => void;
  random?: () => number;
  /**
   * Look for the upstream's key in a successful answer's body too (pass-through routes:
   * any API, an echo service among them). A chat completion's body is the model's output,
   * which never saw the key: only its headers, and the body of an error, are looked into.
   */
  maskSuccessBody?: boolean;
}

export interface Forwarded {
  response: UpstreamResponse;
  upstream: Upstream;
  /** When the answer's headers arrived (`performance.now()`), before `readWhole` read its body. */
  headersAt: number;
  /** Attempts made, across upstreams (1 when the first call answered). */
  attempts: number;
}

/** Forwards along `options.route` (the header above) and masks the upstream's key in the answer. */
export async function forward(options: ForwardOptions): Promise<Forwarded> {
  const forwarded = await tryRoute(options);
  // Whatever route relays it, the answer never carries the upstream's own key back (headers.ts).
  const response = maskSecrets(forwarded.response, forwarded.upstream.spec.secrets, options.maskSuccessBody === true);
  return response === forwarded.response ? forwarded : { ...forwarded, response };
}

/** The breaker, retry and fallback loop of the header above: the answer as the upstream gave it. */
async function tryRoute(options: ForwardOptions): Promise<Forwarded> {
  const { runtime, route, signal } = options;
  let attempts = 0;
  let lastFailure: 'connect' | 'timeout' | 'protocol' | 'cut' | undefined;
  let anyTried = false;
  let openRetryAfterMs = Infinity;
  /** The last retryable answer given up on for the next upstream: the client's after all if no later upstream answers. */
  let passedOver: Forwarded | undefined;
  /** This upstream's last retryable answer, being retried: passed over should its retries fail or not go out. */
  let retried: Forwarded | undefined;

  for (let u = 0; u < route.length; u++) {
    if (options.once && attempts > 0) break;
    const upstream = runtime.upstreams.get(route[u])!;
    const breaker = runtime.breakers.get(route[u])!;
    const retry = upstream.spec.config.retry;
    const retries = options.once ? 0 : retry.attempts;
    const isLast = u === route.length - 1 || options.once;

    for (let attempt = 0; attempt <= retries; attempt++) {
      if (signal.aborted) {
        // e.g. the client left during a dump or a wait: no attempt, no probe taken
        const error = options.abortError(NO_ANSWER_IN_TIME);
        const kept = retried ?? passedOver;
        if (kept && error instanceof GatewayError && error.code === 'upstream_timeout') return answerPassedOver(kept, attempts, options);
        throw error;
      }
      if (!breaker.tryAcquire()) {
        // A retry refused (another request opened the breaker during the wait) leaves the
        // answer retried to the client, unless a later upstream answers.
        openRetryAfterMs = Math.min(openRetryAfterMs, breaker.retryAfterMs());
        break;
      }
      // Half-open lets one request through, the probe: only its end may free the probe slot.
      const probe = breaker.state === 'half_open';
      const openings = breaker.openings;
      anyTried = true;
      attempts++;
      options.onAttempt?.(upstream, attempts);
      let response: UpstreamResponse;
      let headersAt = 0;
      const request = options.build(upstream);
      try {
        response = await upstream.request(request);
        headersAt = performance.now();
        if (options.readWhole !== undefined && !retry.on_status.includes(response.status)) response = await readWhole(response, options.readWhole);
      } catch (err) {
        if (err instanceof GatewayError) {
          if (probe) breaker.release(); // an answer too large: the upstream is up, and a retry would not help
          throw err;
        }
        const kind = classifyTransportError(err);
        if (kind === 'aborted' || signal.aborted) {
          const error = options.abortError(NO_ANSWER_IN_TIME);
          // The total timeout ran out on the route's first attempt, before any header, on a
          // request sent at once: the upstream had the whole deadline and hung, a failure like
          // a first-byte timeout (else one with total_ms < first_byte_ms never opens its
          // breaker). A later attempt cut short by time spent elsewhere, a body still
          // arriving, or a request that waited for one of the gateway's own connections
          // (sent late, or never) says nothing of it.
          // First attempt, not first upstream: a fallback tried because the first upstream's
          // breaker is open (skipped at once) had the whole deadline too.
          const hung = attempts === 1 && headersAt === 0 && request.sent === 'at_once';
          const timedOut = error instanceof GatewayError && error.code === 'upstream_timeout';
          if (hung && timedOut) breaker.onFailure(probe, openings);
          else if (probe) breaker.release();
          // The total timeout ran out on a retry or a fallback: the answer retried, or one passed
          // over for the fallback (a 429 whose retry-after would end past the deadline), is the
          // client's, not a 504.
          const kept = retried ?? passedOver;
          if (timedOut && kept) return answerPassedOver(kept, attempts, options);
          throw error;
        }
        breaker.onFailure(probe, openings);
        if (kind === 'first_byte_timeout' || kind === 'idle_timeout') {
          lastFailure = 'timeout';
          break; // waiting again for a slow model doubles the wait: try the next upstream
        }
        lastFailure = kind === 'protocol' ? 'protocol' : headersAt > 0 ? 'cut' : 'connect';
        if (attempt >= retries || breaker.state === 'open') break; // no backoff for a retry the breaker would refuse
        const backoff = backoffDelay(attempt + 1, retry, options.random);
        if (pastDeadline(backoff, options)) break;
        await pause(backoff, options);
        continue;
      }

      const status = response.status;
      if (!retry.on_status.includes(status)) {
        if (status >= 500) breaker.onFailure(probe, openings);
        else breaker.onSuccess();
        return { response, upstream, attempts, headersAt };
      }
      // Retryable status (429, 5xx by default). 429 says nothing about health.
      if (status >= 500) breaker.onFailure(probe, openings);
      else if (probe) breaker.release();
      const asked = retryAfterMs(response.headers);
      const delay = asked ?? backoffDelay(attempt + 1, retry, options.random);
      // A breaker this failure opened lets no retry through: the answer goes on, not a 503.
      // OpenAI's `x-should-retry: false` says a retry of this request will not succeed here.
      const canRetryHere =
        attempt < retries &&
        breaker.state !== 'open' &&
        response.headers['x-should-retry'] !== 'false' &&
        (asked === undefined || asked <= retry.max_retry_after_ms) &&
        !pastDeadline(delay, options);
      if (!canRetryHere && (isLast || !hasUsableUpstream(runtime, route, u + 1))) {
        return { response, upstream, attempts, headersAt }; // the client sees the upstream's own answer
      }
      // Kept (read whole, when small) rather than discarded: passed over for the next upstream.
      retried = (await held(response, upstream, headersAt)) ?? retried;
      if (!canRetryHere) break;
      await pause(delay, options);
    }
    passedOver = retried ?? passedOver;
    retried = undefined;
  }

  // A later upstream could not be reached (or its breaker was open): the upstream's own
  // answer (a 429 asking for an hour, say) tells the client more than a gateway 503 would.
  if (passedOver) return answerPassedOver(passedOver, attempts, options);
  if (!anyTried) {
    const seconds = Math.max(1, Math.ceil(openRetryAfterMs / 1000));
    throw new GatewayError('circuit_open', 'No upstream is available: every circuit breaker on the route is open.', {
      headers: { 'retry-after': String(seconds) },
    });
  }
  if (lastFailure === 'timeout') throw new GatewayError('upstream_timeout', 'The upstream did not send a response in time.');
  if (lastFailure === 'protocol') throw new GatewayError('upstream_error', 'The upstream sent an invalid response.');
  if (lastFailure === 'cut') throw new GatewayError('upstream_error', 'The upstream response was cut off.');
  throw new GatewayError('upstream_unavailable', 'No upstream could be reached.', { headers: { 'retry-after': '1' } });
}

/** A passed-over answer as the one forwarded, accounted to its upstream. */
function answerPassedOver(passedOver: Forwarded, attempts: number, options: ForwardOptions): Forwarded {
  options.onAttempt?.(passedOver.upstream, attempts);
  return { ...passedOver, attempts };
}

/** The most of a passed-over answer kept for the client (error answers are small). */
const MAX_HELD_BYTES = 64 * 1024;

/**
 * A retryable answer read whole to be sent later, or undefined (it was dumped) when its body
 * is larger than `MAX_HELD_BYTES` or fails: then the fallback's outcome stands alone.
 */
async function held(response: UpstreamResponse, upstream: Upstream, headersAt: number): Promise<Forwarded | undefined> {
  try {
    return { response: await readWhole(response, MAX_HELD_BYTES), upstream, attempts: 0, headersAt };
  } catch {
    return undefined; // past the cap the read stopped, which closed the body
  }
}

/** The answer with its body read whole (see `readWholeBody`), to be read again. */
async function readWhole(response: UpstreamResponse, maxBytes: number): Promise<UpstreamResponse> {
  const bytes = await readWholeBody(response.body, maxBytes);
  return { status: response.status, headers: response.headers, body: replay(bytes), dump: async () => undefined };
}

async function* replay(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  if (bytes.byteLength > 0) yield bytes;
}

function hasUsableUpstream(runtime: Runtime, route: readonly string[], from: number): boolean {
  // Not `state !== 'open'`: a half-open breaker whose probe is out refuses the fallback too.
  return route.slice(from).some((name) => runtime.breakers.get(name)!.available);
}

/** True when a wait of `ms` would end after the total deadline (which would end it in a 504). */
function pastDeadline(ms: number, options: ForwardOptions): boolean {
  return options.deadline !== undefined && performance.now() + ms >= options.deadline;
}

/** Waits `ms`, or less when `signal` aborts: the attempt loop then sees why. */
async function pause(ms: number, options: ForwardOptions): Promise<void> {
  await sleep(ms, undefined, { signal: options.signal }).catch(() => undefined);
}

/** The total timeout while the gateway still waited for an answer. */
const NO_ANSWER_IN_TIME = 'The upstream did not answer within the total timeout.';
