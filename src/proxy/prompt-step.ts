/**
 * Pipeline steps 3 and 4 (DESIGN.md "One request"): select the template version for the
 * request (explicit fields and headers, then the model alias's binding and its experiment
 * assignment), build its context (context-step.ts), and render the body that goes upstream.
 * Without a selection the body is the client's, minus the gateway's own prompt fields.
 */
import type { GatewayDeps } from '../app-types.js';
import type { RuntimeConfig } from '../config/compile.js';
import { messagesTokens } from '../context/tokens.js';
import { GatewayError } from '../errors.js';
import type { AssignmentReason } from '../experiments/assignment.js';
import { applySelection, collectVariables, keptClientMessages, selectTemplate, toolRequestOf, withoutPromptFields, type HeaderGetter, type Selection } from '../prompts/selection.js';
import { resolveVariables } from '../prompts/variables.js';
import { encodingFor, NO_TOOL_TOKENS, toolTokensOnce, type EncodingName } from '../telemetry/usage.js';
import type { ChatBody } from './chat-request.js';
import { injectContext } from './context-step.js';
import { keepExactNumbers } from './exact-json.js';
import type { Exchange } from './exchange.js';

/** What steps 3 and 4 make of the client's body. One per request. */
export interface PreparedPrompt {
  /** The body that goes upstream: a copy, the client's own numbers past 2^53 kept as sent. */
  body: ChatBody;
  /** The template variables that are the client's text (the guard scans them); none without a selection. */
  clientVariables?: Record<string, unknown>;
  /** Whether the selected version has context builders (the span then records the final prompt's tokens). */
  hasContext: boolean;
  /** The tokens of the request's tool definitions, counted once, when first asked (tools are prompt too). */
  countToolTokens: (model?: unknown) => number;
}

export interface PromptStepInput {
  received: ChatBody;
  header: HeaderGetter;
  userId: string | undefined;
  config: RuntimeConfig;
}

/**
 * Steps 3 and 4 for one request: the body to forward and what later steps read. Throws the
 * request's 4xx (a missing or mistyped variable, an unknown template, a prompt over
 * `max_input_tokens`), 424 `context_unavailable`, or why the exchange aborted meanwhile.
 */
export async function promptStep(deps: GatewayDeps, exchange: Exchange, input: PromptStepInput): Promise<PreparedPrompt> {
  const { received, header, userId, config } = input;
  const selection = selectTemplate({ body: received, header, registry: config.prompts.registry, bindings: config.prompts.bindings, userId, now: new Date() });
  if (!selection) {
    const body = keepExactNumbers(withoutPromptFields(received), received);
    return { body, hasContext: false, countToolTokens: toolTokensOnce(body) };
  }
  noteSelection(exchange, selection);
  if (selection.experimentId) deps.counters.record(selection.experimentId, selection.variant!, selection.assignmentReason as AssignmentReason);
  let vars = collectVariables(received, header, selection);
  let clientVariables = vars;
  const maxInput = selection.templateVersion.constraints.max_input_tokens;
  // Under a cap the context budget counts the tools, before the body is built (without
  // one, the budget takes 0 and the tools are counted from the final body).
  let countToolTokens = maxInput !== undefined ? toolTokensOnce(toolRequestOf(received, selection)) : NO_TOOL_TOKENS;
  // 4. context: the version's builders (cached, within the deadline and token budget)
  const plan = config.context.plans.get(selection.templateVersion.ref);
  if (plan) {
    // Defaults applied and the client's values checked before any builder runs: builders
    // read what the template renders (a rule on a variable sees its default), and a request
    // the template refuses (400) calls none of your services.
    vars = { ...vars, ...resolveVariables(plan.clientVariableSpecs, vars) };
    const messages = received.messages as unknown[];
    const keptMessages = keptClientMessages(messages, selection.mode);
    vars = await injectContext(deps, exchange, { plan, messages, keptMessages, toolTokens: countToolTokens(), userId, variables: vars, config });
    // Building stops waiting when the client leaves, the total timeout passes or the drain
    // ends: nothing more is done for the request (a blocking guard would otherwise answer
    // a 400 to no one, or in place of its 504 or 503).
    if (exchange.signal.aborted) throw exchange.abortError();
    clientVariables = clientOwnedVariables(clientVariables, vars);
  }
  const body = keepExactNumbers(applySelection(received, selection, vars) as ChatBody, received);
  if (maxInput !== undefined) checkInputTokens(body.messages, { toolTokens: countToolTokens(), max: maxInput, encoding: encodingFor(body.model) });
  else countToolTokens = toolTokensOnce(body);
  return { body, clientVariables, hasContext: plan !== undefined, countToolTokens };
}

/**
 * The client's variables that are rendered: context builders' names are the gateway's to
 * fill (a client value for one is dropped or replaced), so only the others are the client's text.
 */
function clientOwnedVariables(client: Record<string, unknown>, rendered: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(client)) if (rendered[name] === value) out[name] = value;
  return out;
}

/** Records which template/experiment/variant serves the request, for headers, spans and metrics. */
function noteSelection(exchange: Exchange, selection: Selection): void {
  const r = exchange.record;
  // The model the version sends (as applySelection sets it), from here on.
  r.requestModel = selection.upstreamModel ?? selection.templateVersion.model ?? r.requestModel;
  r.template = selection.templateId;
  r.templateVersion = selection.version;
  const h = exchange.gatewayHeaders;
  h['x-promptgate-template'] = selection.templateId;
  h['x-promptgate-template-version'] = selection.version;
  if (selection.experimentId) {
    r.experiment = selection.experimentId;
    r.variant = selection.variant;
    // Only hash-assigned requests enter the analysis; defaults and no-user requests are counted apart.
    r.experimentAssignment = selection.assignmentReason === 'assigned' ? 'hash' : 'default';
    h['x-promptgate-experiment'] = selection.experimentId;
    h['x-promptgate-variant'] = selection.variant!;
  }
}

/**
 * `constraints.max_input_tokens`: the prompt as it would go upstream (rendered template,
 * context, the client's turns, and the tool definitions OpenAI bills as prompt), counted as
 * the context budget counts it but all in the encoding of the model it goes to (the one the
 * usage estimate counts in), is refused over the cap with OpenAI's code for a prompt over a
 * model's context window. The context budget already trims context to fit: what is left
 * over is the template, the client's own turns and its tools.
 */
function checkInputTokens(messages: unknown, cap: { toolTokens: number; max: number; encoding: EncodingName }): void {
  const { toolTokens, max, encoding } = cap;
  const tokens = (Array.isArray(messages) ? messagesTokens(messages, encoding) : 0) + toolTokens;
  if (tokens <= max) return;
  const detail = toolTokens > 0 ? ` (${toolTokens} of them tool definitions)` : '';
  const remedy = toolTokens > 0 ? 'Shorten the messages or send fewer or smaller tools.' : 'Shorten the messages.';
  // "maximum context length", as OpenAI's own message says it: clients that recognise an
  // overflow by its text (LangChain's ContextOverflowError) treat this one alike.
  throw new GatewayError(
    'context_length_exceeded',
    `This prompt is ${tokens} tokens${detail}, over the template version's max_input_tokens of ${max} (its maximum context length). ${remedy}`,
    { param: 'messages' },
  );
}
