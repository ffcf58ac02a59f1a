/**
 * Pipeline step 4 (DESIGN.md "One request"): build the selected version's context and merge
 * it into the render variables. Between selection and rendering; the guard runs after it.
 *
 * Precedence: a builder's output wins over a client variable of the same name (a client
 * can only set names the version declares; builder names are filled by the gateway, so
 * e.g. tier rules cannot be raised by a request). A declared variable with a builder's name
 * still gives its type check and its default when the builder is skipped.
 */
import type { GatewayDeps } from '../app-types.js';
import type { RuntimeConfig } from '../config/compile.js';
import { buildContext } from '../context/build.js';
import type { ContextPlan } from '../context/compile.js';
import type { ContextReport } from '../context/types.js';
import { createContextRuntime } from '../context/runtime.js';
import type { Exchange } from './exchange.js';
import { noteInjection } from './guard-step.js';

export interface ContextStepInput {
  plan: ContextPlan;
  messages: readonly unknown[];
  /** The client's messages the final prompt keeps (not those the template replaces): the token budget counts these. */
  keptMessages: readonly unknown[];
  /** Tokens of the request's tool definitions, when the version caps `max_input_tokens` (the budget counts them). */
  toolTokens: number;
  userId: string | undefined;
  variables: Readonly<Record<string, unknown>>;
  config: RuntimeConfig;
}

/** The render variables with the context added; records the outcome on the exchange. */
export async function injectContext(deps: GatewayDeps, exchange: Exchange, input: ContextStepInput): Promise<Record<string, unknown>> {
  // Apps built without a ContextRuntime (unit tests) get one on first use.
  const runtime = (deps.context ??= createContextRuntime());
  // Recorded from `onReport`, also when a required builder fails the request (424): that
  // request was served by its recipe, and the recipe statistics and a `success` bandit must
  // count it as the recipe's error (recorded only on success, a failing recipe looked perfect).
  const { variables } = await buildContext(runtime, input.plan, {
    messages: input.messages,
    keptMessages: input.keptMessages,
    toolTokens: input.toolTokens,
    userId: input.userId,
    variables: input.variables,
    signal: exchange.signal,
    guard: input.config.guard.injection,
    parent: exchange.spans.otelContext,
    requestId: exchange.requestId,
    onReport: (report, unavailable) => recordReport(exchange, report, unavailable),
  });
  const merged = { ...input.variables, ...variables };
  // Builder names are the gateway's to fill: a builder that produced nothing (or that this
  // request's recipe does not use) leaves the version's declared default (applied at
  // render), never the client's value of that name.
  for (const name of input.plan.names) if (!(name in variables) && name in merged) delete merged[name];
  return merged;
}

/**
 * The context outcome on the request record: skipped builders and the recipe always; the
 * tokens and injection score only when the context goes out (`unavailable`: 424).
 */
function recordReport(exchange: Exchange, report: ContextReport, unavailable: boolean): void {
  const r = exchange.record;
  if (report.skipped.length > 0) r.contextSkipped = report.skipped;
  if (!unavailable) {
    r.contextTokens = report.tokens;
    // Passages were scanned one by one (indirect injection); the request keeps the highest score.
    if (report.injectionScore !== undefined) noteInjection(exchange, report.injectionScore, report.builders.some((b) => b.flagged > 0));
  }
  if (report.recipe !== undefined) {
    r.contextRecipe = report.recipe;
    r.contextExperiment = report.recipeExperiment;
    r.contextRecipeAssignment = report.recipeAssignment;
  }
}
