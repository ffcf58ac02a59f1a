/**
 * POST /v1/feedback: user feedback on an earlier response (thumbs up, a rating), joined to
 * the experiment variant (and context recipe) that served it, so feedback metrics such as
 * `feedback.thumbs_up` enter the experiment statistics.
 *
 *   POST /v1/feedback {"request_id": "<x-promptgate-request-id>", "metric": "thumbs_up", "value": 1}
 *
 * The gateway remembers the assignment of recent requests (the last 100,000, for 24 hours),
 * so feedback must arrive within that window; each (request, metric) counts once. A request
 * in no experiment takes feedback only on the metric its recipe's bandit learns from.
 */
import { Hono, type MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { LRUCache } from 'lru-cache';
import { GatewayError } from '../errors.js';
import { FEEDBACK_NAME } from '../experiments/metric-names.js';
import type { RequestRecord } from '../telemetry/types.js';

interface Served {
  experiment?: string;
  variant?: string;
  /** Metrics already counted for this request; most requests never get feedback. */
  seen?: string[];
  /**
   * The latest request with this id was served by an experiment without hashing (no user
   * id, outside the schedule, held back by the rollout) and used no recipe: feedback for the
   * id counts nowhere. Kept only so that `seen` outlives it.
   */
  excluded?: true;
}

/**
 * Distinct feedback metrics one request can get. Each is remembered with the request (to
 * count it once), so without a limit one request id could take any amount of memory, and
 * every new made-up name would add an observation under `metric="other"`.
 */
export const MAX_FEEDBACK_METRICS = 16;

/**
 * Recent requests' assignments, filled as requests finish; a request still in flight is
 * found among `inflight`. One per process.
 */
export class FeedbackLedger {
  readonly #served: LRUCache<string, Served>;
  readonly #inflight: Iterable<{ readonly record: RequestRecord }> | undefined;

  /**
   * `inflight`: the requests in flight (the server's exchanges). A client has the whole
   * answer before its request finishes: a stream's `[DONE]` is read while the gateway still
   * waits for the upstream to end its body, or notices later that the client closed it.
   * Feedback posted at once must find that request: it is looked up there on a miss.
   */
  constructor(options: { maxEntries?: number; ttlMs?: number; inflight?: Iterable<{ readonly record: RequestRecord }> } = {}) {
    // Bounded by maxSize (each entry counts 1) rather than `max`: lru-cache preallocates
    // arrays for `max` entries (~4 MB for 100,000), which a sidecar would pay at start-up.
    this.#served = new LRUCache({ maxSize: options.maxEntries ?? 100_000, sizeCalculation: () => 1, ttl: options.ttlMs ?? 24 * 3600_000 });
    this.#inflight = options.inflight;
  }

  /** Remembers a request that feedback may refer to: when it finishes, or on feedback while it is in flight. */
  remember(record: RequestRecord): void {
    const inExperiment = record.experiment !== undefined && record.experimentAssignment === 'hash';
    const inRecipe = record.contextRecipe !== undefined;
    // Requests in no experiment (pass-through calls, other models) that share the id are no retry of it.
    if (!inExperiment && !inRecipe && record.experiment === undefined) return;
    // The id can come again (a client's own x-request-id, resent with a retry): feedback
    // already counted for it stays counted, rather than counting once more per request.
    const earlier = this.#served.get(record.requestId);
    if (!inExperiment && !inRecipe) {
      // The experiment served this one without hashing (no user id, outside the schedule,
      // held back): feedback goes to the latest request with the id, not the earlier variant.
      if (earlier) this.#served.set(record.requestId, { seen: earlier.seen, excluded: true });
      return;
    }
    this.#served.set(record.requestId, { experiment: inExperiment ? record.experiment : undefined, variant: inExperiment ? record.variant : undefined, seen: earlier?.seen });
  }

  /**
   * The assignment of `requestId` for `metric`, once; undefined when unknown, `duplicate`
   * when already counted, `too_many` past MAX_FEEDBACK_METRICS metrics of the request.
   */
  take(requestId: string, metric: string): Served | 'duplicate' | 'too_many' | undefined {
    // The latest request with the id may still be in flight (a client's x-request-id sent
    // again): remembered now, over an earlier one's entry, so the feedback goes to it and
    // stays counted when it finishes.
    const open = this.#inFlight(requestId);
    if (open) this.remember(open);
    const served = this.#served.get(requestId);
    if (!served || served.excluded) return undefined;
    if (served.seen?.includes(metric)) return 'duplicate';
    if ((served.seen?.length ?? 0) >= MAX_FEEDBACK_METRICS) return 'too_many';
    (served.seen ??= []).push(metric);
    return served;
  }

  /** The latest request in flight with this id (its variant and recipe are chosen before it is forwarded). */
  #inFlight(requestId: string): RequestRecord | undefined {
    let found: RequestRecord | undefined;
    for (const { record } of this.#inflight ?? []) if (record.requestId === requestId) found = record;
    return found;
  }

  /** Undoes `take(requestId, metric)` when nothing counted the feedback after all. */
  release(requestId: string, metric: string): void {
    const seen = this.#served.peek(requestId)?.seen;
    const at = seen?.lastIndexOf(metric) ?? -1;
    if (at >= 0) seen!.splice(at, 1);
  }
}

export interface FeedbackDeps {
  ledger: FeedbackLedger;
  observeExperiment?: (o: { experiment: string; variant: string; metric: string; value: number }) => void;
  observeContextFeedback?: (requestId: string, metric: string, value: number) => boolean;
  /** `server.max_body_bytes` of the config in force; default 4 MiB (its default). */
  maxBodyBytes?: () => number;
}

const MAX_VALUE = 1e150;

export function createFeedbackRoutes(deps: FeedbackDeps): Hono {
  const app = new Hono();
  // The route takes no token: without a limit, one large body would be held in memory whole.
  // The rest of a refused body is not read, so the connection closes (RFC 9110 §15.5.14),
  // and says so: a client must not send its next request on it.
  const limitBody: MiddlewareHandler = (c, next) => {
    const limit = deps.maxBodyBytes?.() ?? 4 * 1024 * 1024;
    return bodyLimit({
      maxSize: limit,
      onError: () => {
        throw new GatewayError('body_too_large', `Request body exceeds the limit of ${limit} bytes.`, { headers: { connection: 'close' } });
      },
    })(c, next);
  };
  app.post('/v1/feedback', limitBody, async (c) => {
    let parsed: unknown;
    try {
      parsed = await c.req.json();
    } catch {
      parsed = undefined;
    }
    // `null`, `[]` or `5` parse, but are no object: the same 400 as a body that does not parse.
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new GatewayError('invalid_json', 'The feedback body must be a JSON object.');
    const body = parsed as { request_id?: unknown; metric?: unknown; value?: unknown };
    const requestId = body.request_id;
    const metric = body.metric ?? 'thumbs_up';
    const value = typeof body.value === 'boolean' ? Number(body.value) : body.value;
    if (typeof requestId !== 'string' || requestId === '') throw new GatewayError('invalid_request', "'request_id' is required.", { param: 'request_id' });
    if (typeof metric !== 'string' || !FEEDBACK_NAME.test(metric)) throw new GatewayError('invalid_request', "'metric' must be a lower-case name like thumbs_up.", { param: 'metric' });
    // The statistics keep n, the sum and the sum of squares: a value whose square overflows cannot be counted.
    if (typeof value !== 'number' || !(value >= 0 && value <= MAX_VALUE)) throw new GatewayError('invalid_request', `'value' must be a number from 0 to ${MAX_VALUE} (or a boolean).`, { param: 'value' });

    const name = `feedback.${metric}`;
    const served = deps.ledger.take(requestId, name);
    if (served === undefined) throw new GatewayError('not_found', `No recent request ${JSON.stringify(requestId.slice(0, 100))} served by an experiment or context recipe.`, { param: 'request_id' });
    if (served === 'duplicate') return c.json({ status: 'duplicate', request_id: requestId, metric: name }, 409);
    if (served === 'too_many') throw new GatewayError('invalid_request', `A request takes feedback on at most ${MAX_FEEDBACK_METRICS} metrics.`, { param: 'metric' });
    // A request in no experiment counts feedback only through a recipe bandit learning from
    // this metric: otherwise the value would go nowhere, and "recorded" would be untrue.
    const byRecipe = deps.observeContextFeedback?.(requestId, name, value) ?? false;
    if (!served.experiment && !byRecipe) {
      deps.ledger.release(requestId, name);
      throw new GatewayError(
        'not_found',
        `Request ${JSON.stringify(requestId.slice(0, 100))} is in no experiment, and no context recipe bandit learns from ${name}: the feedback would count nowhere.`,
        { param: 'request_id' },
      );
    }
    if (served.experiment) deps.observeExperiment?.({ experiment: served.experiment, variant: served.variant!, metric: name, value });
    return c.json({ status: 'recorded', request_id: requestId, metric: name, experiment: served.experiment ?? null, variant: served.variant ?? null });
  });
  // The gateway's own route: another method must not fall through to the /v1/* pass-through
  // (it went to the upstream, with the upstream's key).
  app.all('/v1/feedback', () => {
    throw new GatewayError('method_not_allowed', 'Use POST for /v1/feedback.', { headers: { allow: 'POST' } }); // RFC 9110 §15.5.6
  });
  return app;
}
