import { describe, expect, it } from 'vitest';
import { CircuitBreaker } from './breaker.js';
import { backoffDelay, retryAfterMs } from './retry.js';

describe('CircuitBreaker', () => {
  it('opens after N consecutive failures, probes once after the cool-down, closes on success', () => {
    let now = 0;
    const b = new CircuitBreaker(3, 1000, () => now);
    b.onFailure();
    b.onFailure();
    b.onSuccess(); // resets the count
    b.onFailure();
    b.onFailure();
    expect(b.tryAcquire()).toBe(true);
    b.onFailure();
    expect(b.state).toBe('open');
    expect(b.tryAcquire()).toBe(false);
    expect(b.retryAfterMs()).toBe(1000);
    now = 1000;
    expect(b.tryAcquire()).toBe(true); // the probe
    expect(b.state).toBe('half_open');
    expect(b.tryAcquire()).toBe(false); // only one probe at a time
    b.onSuccess();
    expect(b.state).toBe('closed');
  });

  it('re-opens when the probe fails', () => {
    let now = 0;
    const b = new CircuitBreaker(1, 100, () => now);
    b.onFailure();
    now = 100;
    expect(b.tryAcquire()).toBe(true);
    b.onFailure();
    expect(b.state).toBe('open');
    expect(b.tryAcquire()).toBe(false);
  });

  it('is off with failures: 0', () => {
    const b = new CircuitBreaker(0, 100);
    for (let i = 0; i < 10; i++) b.onFailure();
    expect(b.tryAcquire()).toBe(true);
  });
});

describe('retry timing', () => {
  it('backs off exponentially with equal jitter, capped', () => {
    const opts = { backoff_ms: 100, max_backoff_ms: 1000 };
    expect(backoffDelay(1, opts, () => 0)).toBe(50);
    expect(backoffDelay(1, opts, () => 1)).toBe(100);
    expect(backoffDelay(3, opts, () => 1)).toBe(400);
    expect(backoffDelay(10, opts, () => 1)).toBe(1000);
  });

  it('reads retry-after-ms, retry-after seconds and HTTP-dates', () => {
    expect(retryAfterMs({ 'retry-after-ms': '250' })).toBe(250);
    expect(retryAfterMs({ 'retry-after': '2' })).toBe(2000);
    const now = Date.parse('2026-11-23T10:00:00Z');
    expect(retryAfterMs({ 'retry-after': 'Mon, 23 Nov 2026 10:00:03 GMT' }, now)).toBe(3000);
    expect(retryAfterMs({})).toBeUndefined();
    expect(retryAfterMs({ 'retry-after': 'soon' })).toBeUndefined();
  });
});

describe('CircuitBreaker: requests from before it opened', () => {
  it('a failure of a request let through while closed, ending during the probe, neither reopens it nor frees the probe slot', () => {
    let now = 0;
    const b = new CircuitBreaker(1, 100, () => now);
    expect(b.tryAcquire()).toBe(true); // a slow request, let through while closed
    b.onFailure(); // another request fails: open
    now = 100;
    expect(b.tryAcquire()).toBe(true); // the probe
    b.onFailure(false); // the slow one fails now
    expect(b.state).toBe('half_open');
    expect(b.tryAcquire()).toBe(false); // still one probe at a time
    b.onSuccess(); // the probe succeeds
    expect(b.state).toBe('closed');
  });
});
