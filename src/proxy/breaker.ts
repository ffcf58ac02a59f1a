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

  constructor(
    private threshold: number,
    private cooldownMs: number,
    private now: () => number = Date.now,
  ) {}

  /** Applies new settings after a config reload; the current state is kept. */
  configure(threshold: number, cooldownMs: number): void {
    this.threshold = threshold;
    this.cooldownMs = cooldownMs;
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

  onFailure(): void {
    this.#probing = false;
    this.#failures++;
    if (this.threshold === 0) return;
    if (this.#state === 'half_open' || this.#failures >= this.threshold) {
      this.#state = 'open';
      this.#openedAt = this.now();
    }
  }

  /** A request that ended without telling health either way (e.g. the client left). */
  release(): void {
    this.#probing = false;
  }
}
