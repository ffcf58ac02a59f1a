/**
 * Metrics and spans of one build, written once its final numbers (after the budget) are
 * known: each builder's `context <name>` span and the `context` span over them.
 */
import { SpanStatusCode, type Span } from '@opentelemetry/api';
import type { Outcome } from './outcome.js';
import type { ContextRuntime } from './runtime.js';
import type { Builder, ContextReport } from './types.js';

/** Metrics and the builder's span, once its final numbers (after the budget) are known. */
export function record(rt: ContextRuntime, b: Builder, x: Outcome): void {
  const r = x.report;
  rt.metrics?.observeBuild(b.name, b.kind, r.status, r.ms / 1000);
  // Not a failure of this builder: an input it needs is missing, the client left, or a
  // required builder's failure ended the build while this one still ran (`cancelled`).
  if ((r.status === 'skipped' || r.status === 'failed') && r.reason !== 'missing_input' && r.reason !== 'aborted' && r.reason !== 'cancelled') rt.metrics?.failure(b.name, r.reason ?? 'error');
  const span = x.span;
  if (span.isRecording()) {
    span.setAttributes({
      'promptgate.context.status': r.status,
      'promptgate.context.items': r.items,
      'promptgate.context.tokens': r.tokens,
      'promptgate.context.trimmed': r.trimmed,
      'promptgate.context.duration_ms': Math.round(r.ms * 1000) / 1000,
    });
    if (r.cache) span.setAttribute('promptgate.context.cache', r.cache);
    if (r.reason) span.setAttribute('promptgate.context.reason', r.reason);
    if (r.flagged) span.setAttributes({ 'promptgate.context.injection.flagged': r.flagged, 'promptgate.context.injection.blocked': r.blocked });
    if (r.status === 'failed' || (r.status === 'skipped' && r.reason !== 'missing_input')) {
      span.setAttribute('error.type', r.reason ?? 'error');
      span.setStatus({ code: SpanStatusCode.ERROR, message: r.reason });
    }
  }
  span.end(x.endedAt);
}

/** The `context` span's attributes from the build's report (when recording), then its end. */
export function endRoot(root: Span, r: ContextReport): void {
  if (root.isRecording()) {
    root.setAttributes({
      'promptgate.context.tokens': r.tokens,
      'promptgate.context.budget': r.budget,
      'promptgate.context.dropped': r.dropped,
      'promptgate.context.skipped': r.skipped,
      'promptgate.context.builders': r.builders.map((b) => `${b.name}:${b.status}${b.reason ? `(${b.reason})` : ''}`),
    });
    if (r.recipe) root.setAttributes({ 'promptgate.context.recipe': r.recipe, 'promptgate.context.recipe_assignment': r.recipeAssignment! });
    if (r.injectionScore !== undefined) {
      root.setAttributes({
        'promptgate.context.injection.score': r.injectionScore,
        'promptgate.context.injection.flagged': r.injectionFlagged,
        'promptgate.context.injection.blocked': r.injectionBlocked,
      });
    }
  }
  root.end();
}
