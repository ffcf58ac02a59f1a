/**
 * A per-upstream circuit breaker: opens after `failures` consecutive failures, lets one
 * probe through after `cooldownMs` (half-open), closes on the probe's success and opens
 * again on its failure. Lives as long as the process (kept across config reloads by name).
 */
export type BreakerState = 'closed' | 'open' | 'half_open';

export class CircuitBreaker {
  #failures = 0;
  #openedAt = 0;
  #state: BreakerState = 'closed';
  #probing = false;
  #openings = 0;

  constructor(
    private threshold: number,
    private cooldownMs: number,
    private now: () => number = Date.now,
  ) {}

  /**
   * Applies new settings after a config reload; the current state is kept, unless the
   * breaker is turned off (`failures: 0`), which closes it: an off breaker never stays open.
   */
  configure(threshold: number, cooldownMs: number): void {
    this.threshold = threshold;
    this.cooldownMs = cooldownMs;
    if (threshold === 0) this.onSuccess();
  }

  get state(): BreakerState {
    return this.#state;
  }

  /** May a request go out now? In half-open state only one probe at a time is allowed. */
  tryAcquire(): boolean {
    if (this.threshold === 0 || this.#state === 'closed') return true;
    if (this.#state === 'open') {
      if (this.now() - this.#openedAt < this.cooldownMs) return false;
      this.#state = 'half_open';
      this.#probing = false;
    }
    if (this.#probing) return false;
    this.#probing = true;
    return true;
  }

  /** Would `tryAcquire` let a request through now? (Takes nothing: the probe slot stays free.) */
  get available(): boolean {
    if (this.threshold === 0 || this.#state === 'closed') return true;
    if (this.#state === 'open') return this.now() - this.#openedAt >= this.cooldownMs;
    return !this.#probing;
  }

  /**
   * How many times the breaker has opened. A request notes it when let through: if the
   * breaker opens before it fails, its failure is old news (see `onFailure`).
   */
  get openings(): number {
    return this.#openings;
  }

  /** Milliseconds until a probe may go out (0 when closed). */
  retryAfterMs(): number {
    if (this.#state !== 'open') return this.#state === 'half_open' ? 1000 : 0;
    return Math.max(0, this.cooldownMs - (this.now() - this.#openedAt));
  }

  onSuccess(): void {
    this.#failures = 0;
    this.#probing = false;
    this.#state = 'closed';
  }

  /**
   * A failed request. `probe`: whether it was the half-open probe (default: any request,
   * for callers that do not track it); `openings`: the breaker's `openings` when the request
   * was let through. A request let through before the breaker opened that fails after it
   * opened is old news: it neither restarts the cool-down, nor reopens a half-open breaker or
   * frees its probe slot (which would let a second probe out next to the first), nor counts
   * towards opening it again once the probe closed it. (The requests in flight when an
   * upstream hangs time out one by one for up to `first_byte_ms`: counted, they kept it
   * refused, or refused it again, long after it was back.)
   */
  onFailure(probe = true, openings = this.#openings): void {
    if (!probe && (this.#state !== 'closed' || openings !== this.#openings)) return;
    this.#probing = false;
    this.#failures++;
    if (this.threshold === 0) return;
    if (this.#state === 'half_open' || this.#failures >= this.threshold) {
      this.#state = 'open';
      this.#openedAt = this.now();
      this.#openings++;
    }
  }

  /**
   * The probe ended without telling health either way (the client left, a 429): another
   * request may probe. Only the probe's holder calls it: a request let through while the
   * breaker was closed, ending during someone else's probe, would let a second probe out.
   */
  release(): void {
    this.#probing = false;
  }
}
