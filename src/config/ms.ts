/**
 * Durations in config (`*_ms`): whole milliseconds that Node's timers can wait. A
 * `setTimeout` longer than 2^31-1 ms (about 24.8 days) fires after 1 ms instead, so a
 * `total_ms` of a month would abort every request at once.
 */
import { z } from 'zod';

/** The longest delay `setTimeout` takes. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

const TOO_LONG = `at most ${MAX_TIMER_MS} ms (about 24.8 days)`;

/** A duration of 1 ms or more. */
export const positiveMs = () => z.number().int().positive().max(MAX_TIMER_MS, TOO_LONG);

/** A duration of 0 ms or more. */
export const nonNegativeMs = () => z.number().int().nonnegative().max(MAX_TIMER_MS, TOO_LONG);
