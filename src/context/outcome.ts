/**
 * The outcome of one builder in a build: its report, output and span, and a builder's
 * error as its report's status and reason.
 */
import type { Span } from '@opentelemetry/api';
import { ContextSourceError } from './fetch-json.js';
import { TIMED_OUT } from './race.js';
import type { BuilderOutput, BuilderReport } from './types.js';

/** The outcome of one builder before the budget. */
export interface Outcome {
  report: BuilderReport;
  output?: BuilderOutput;
  span: Span;
  endedAt: number;
}

/** A builder's error as its report's status and reason. */
export function failure(report: BuilderReport, err: unknown): undefined {
  if (err === TIMED_OUT) return fail(report, 'skipped', 'timeout');
  if (err instanceof ContextSourceError) return fail(report, err.reason === 'timeout' ? 'skipped' : 'failed', err.reason);
  return fail(report, 'failed', 'error');
}

/** Marks the report skipped or failed; `undefined` stands for the missing output. */
export function fail(report: BuilderReport, status: 'skipped' | 'failed', reason: string): undefined {
  report.status = status;
  report.reason = reason;
  return undefined;
}
