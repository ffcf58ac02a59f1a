/**
 * POST /v1/chat/completions — the request pipeline (see DESIGN.md "One request"):
 *   receive -> identify -> select -> context -> guard -> forward -> account -> respond.
 */
import type { Context } from 'hono';
// A Response created at import time, before @hono/node-server swaps the global Response:
// node-server then sees its marker header and leaves the already-written response alone.
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import type { AppEnv, GatewayDeps } from '../app-types.js';
import { countPromptTokens } from '../context/tokens.js';
import { GatewayError } from '../errors.js';
import type { Runtime } from '../runtime.js';
import { formatUsd } from '../telemetry/pricing.js';
import { encodingFor } from '../telemetry/usage.js';
import { estimateUnread, noteUpstreamAnswer, noteUpstreamError, priceUsage, readCompletion } from './accounting.js';
import { bodiesFor, buildRequest, type ChatBody } from './chat-request.js';
import { decodeContent } from './content-coding.js';
import type { Exchange } from './exchange.js';
import { forward, type Forwarded } from './forward.js';
import { guardRequest } from './guard-step.js';
import { maskedBytes, maskSecrets, responseHeaders, upstreamRequestHeaders } from './headers.js';
import { routeForModel } from './model-route.js';
import { promptStep } from './prompt-step.js';
import { readBody } from './read-body.js';
import { headerGetter, openExchange, requireJson, parseJsonObject, refuseContentCoding, refuseLoop, refuseWhileDraining, withoutBom } from './request-shape.js';
import { relaySse, writeSse } from './sse-relay.js';
import { StreamAccounting } from './stream-accounting.js';
import type { UpstreamResponse } from './upstream.js';
import { bodyReadError, readWholeBody } from './upstream-body.js';

export function chatCompletions(deps: GatewayDeps) {
  return async function chatCompletionsHandler(c: Context<AppEnv>): Promise<Response> {
    const runtime: Runtime = deps.holder.current;
    const config = runtime.config;
    const header = headerGetter(c);
    const outgoing = c.env?.outgoing;
    const exchange = openExchange(c, deps, config, { route: '/v1/chat/completions', header, captureContent: config.telemetry.capture_content });
    refuseWhileDraining(deps); // after the exchange opened: the 503 is accounted
    refuseLoop(header('via'), deps.via);

    // 1. receive
    requireJson(header('content-type'));
    refuseContentCoding(header('content-encoding'));
    const raw = withoutBom(await readBody(c.env?.incoming, c.req.raw, config.server.max_body_bytes));
    const received = parseJsonObject(raw) as ChatBody;
    checkChatShape(received);
    const stream = received.stream === true;
    exchange.record.stream = stream;
    // The client's model until the prompt step names the one sent: a request that fails in
    // that step (a 424, a client leaving during context) is counted under its model too.
    exchange.record.requestModel = received.model as string;

    // 2. identify
    const userId = config.prompts.userIdOf(received, header);

    // 3. select the template version (experiment assignment) and render it, with
    // 4. its context (prompt-step.ts)
    const { body, clientVariables, hasContext, countToolTokens } = await promptStep(deps, exchange, { received, header, userId, config });
    exchange.record.requestModel = body.model as string;

    // 5. guard: the client's own messages and variables (context passages were scanned in
    // step 4). A guard that may block decides now; one that only flags scans once the
    // request is on its way upstream (below), so its time overlaps the upstream's.
    const guard = config.injectionGuard;
    if (guard.blocks) guardRequest(guard, exchange, received.messages as unknown[], clientVariables);

    // 6. forward
    const clientHeaders = upstreamRequestHeaders(c.env?.incoming?.headers ?? Object.fromEntries(c.req.raw.headers), deps.via);
    const route = routeForModel(config, exchange, body.model);
    const outgoingBodies = bodiesFor({ received, raw, body, stream, route, config });
    // Also for a request no upstream answers: its span shows what was sent.
    if (exchange.content.captureContent) exchange.content.prompt = body.messages;
    const forwarding = forward({
      runtime,
      route,
      ...exchange.forwarding(),
      // A non-stream answer is read inside the attempt: one the upstream cuts off is retried.
      readWhole: stream ? undefined : MAX_COMPLETION_BYTES,
      build: (upstream) => {
        const request = buildRequest({ upstream, clientHeaders, body: outgoingBodies.for(upstream), signal: exchange.signal });
        // One CLIENT span for all attempts; exactly one traceparent goes upstream: its own.
        const span = exchange.spans.startUpstream({
          provider: upstream.spec.provider,
          requestModel: body.model as string,
          serverAddress: upstream.spec.serverAddress,
          serverPort: upstream.spec.serverPort,
          stream,
          body,
        });
        span.applyTo(request.headers);
        return request;
      },
    });
    // What only records runs once the request is on the wire, while the upstream works on it.
    const recording = afterSend(exchange, () => {
      if (!guard.blocks) guardRequest(guard, exchange, received.messages as unknown[], clientVariables);
      // The final prompt's tokens, tools included, in the model's encoding: for the span only.
      if (hasContext && exchange.spans.recording) exchange.record.promptTokens = countPromptTokens(body.messages as unknown[], { toolTokens: countToolTokens(), encoding: encodingFor(body.model) });
    });
    let forwarded: Forwarded;
    try {
      forwarded = await forwarding;
    } finally {
      await recording; // done before anything is answered: its header and record go with the answer
    }
    const { upstream } = forwarded;
    exchange.record.ttfbMs = forwarded.headersAt - exchange.startedAt;
    noteUpstreamAnswer(exchange, forwarded.response.headers);
    // A compressed answer (asked for identity, got gzip anyway) is decoded rather than
    // relayed as it came: the client gets the same content, and usage stays exact, which
    // it could not if the gateway only passed the coded bytes on. A coding Node cannot
    // decode is relayed untouched with its content-encoding (never plain-labelled coded
    // bytes), read whole even when streamed, and its usage is estimated.
    const { response: decoded, opaque } = decodeContent(forwarded.response);
    // forward() cannot mask the upstream's key inside a compressed body: decoded, it is
    // masked now (headers.ts maskSecrets).
    const response = decoded === forwarded.response ? decoded : maskSecrets(decoded, upstream.spec.secrets);

    const headers = responseHeaders(response, exchange);
    if (stream && response.status === 200 && !opaque && relayedAsStream(response.headers['content-type'])) {
      const sent = outgoingBodies.for(upstream);
      const streamHooks = new StreamAccounting(exchange, upstream, { stripUsageChunk: sent.asksUsage, outBody: sent.bytes });
      exchange.record.status = 200;
      if (outgoing) {
        writeSse(response.body, outgoing, { status: 200, headers }, streamHooks);
        return RESPONSE_ALREADY_SENT;
      }
      return new Response(relaySse(response.body, streamHooks), { status: 200, headers: headers as HeadersInit });
    }

    // Non-stream (or an error answer to a stream request): read it whole, then respond. An
    // error sent with a 200 (or a proxy's page) may quote the request's Authorization:
    // masked as an error status's body is (one search per key of the body in hand).
    const bytes = maskedBytes(await readWholeAnswer(response, exchange), upstream.spec.secrets.bytes);
    exchange.record.status = response.status;
    if (response.status < 200 || response.status >= 300) {
      exchange.record.outcome = 'error';
      exchange.record.errorType = `upstream_${response.status}`;
    }
    // 7. account: the answer goes to the client as it came, even when accounting it fails.
    try {
      if (response.status >= 200 && response.status < 300) {
        if (opaque) estimateUnread(exchange, body.messages as unknown[], countToolTokens);
        else readCompletion(exchange, bytes, body.messages as unknown[], countToolTokens);
        const cost = priceUsage(exchange, upstream);
        if (cost !== null && cost !== undefined) headers['x-promptgate-cost-usd'] = formatUsd(cost);
        // The upstream reported no usage: the tokens (and the cost) are the gateway's count.
        if (exchange.record.usage?.estimated) headers['x-promptgate-usage-estimated'] = 'true';
      } else if (response.status >= 400 && !opaque) {
        noteUpstreamError(exchange, bytes);
      }
    } catch (err) {
      exchange.accountingFailed(err);
    }
    // 8. respond
    if (outgoing) {
      // Straight to the Node response, then the accounting: the client does not wait for
      // spans, metrics and the log line.
      // RFC 9110 §8.6: no Content-Length on 204 and 304.
      if (response.status !== 204 && response.status !== 304) headers['content-length'] = String(bytes.byteLength);
      outgoing.writeHead(response.status, headers);
      outgoing.end(bytes);
      exchange.finish();
      return RESPONSE_ALREADY_SENT;
    }
    exchange.finish();
    return new Response(bytes as Uint8Array<ArrayBuffer>, { status: response.status, headers: headers as HeadersInit });
  };
}

/**
 * Runs `record` once the request just dispatched is on the wire; resolves when it has run
 * (never rejects). undici writes a request on a kept-alive connection in the next check
 * phase, after checking the idle socket for a close (GHSA-35p6-xmwp-9g52): an Immediate set
 * after the dispatch runs right after that write, so the recording overlaps the upstream's
 * work instead of delaying the request by its length. What runs here only records (a guard
 * that only flags, a count for the span): a fault in it is the gateway's bookkeeping
 * (`accountingFailed`), and the answer still goes to the client.
 */
function afterSend(exchange: Exchange, record: () => void): Promise<void> {
  return new Promise((resolve) => {
    setImmediate(() => {
      try {
        record();
      } catch (err) {
        exchange.accountingFailed(err);
      }
      resolve();
    });
  });
}

function checkChatShape(body: ChatBody): void {
  if (typeof body.model !== 'string' || body.model === '') {
    throw new GatewayError('invalid_request', "'model' is required and must be a string.", { param: 'model' });
  }
  if (!Array.isArray(body.messages) || body.messages.length === 0) {
    throw new GatewayError('invalid_request', "'messages' is required and must be a non-empty array.", { param: 'messages' });
  }
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean') {
    throw new GatewayError('invalid_request', "'stream' must be a boolean.", { param: 'stream' });
  }
}

/**
 * Whether a 200 answer to a stream request is relayed as a stream: unless it is JSON (an
 * upstream that ignored `stream` answers one completion). Not only `text/event-stream`:
 * some OpenAI-compatible servers label their event stream `text/plain` or not at all, and
 * the clients read it anyway; held back whole, it would reach them all at the end.
 */
function relayedAsStream(contentType: string | string[] | undefined): boolean {
  const v = (Array.isArray(contentType) ? contentType[0] : contentType)?.split(';')[0].trim().toLowerCase();
  return v === undefined || !(v === 'application/json' || (v.startsWith('application/') && v.endsWith('+json')));
}

/**
 * The most of a non-stream answer the gateway holds: it reads the answer whole (for usage)
 * before sending it, so without a limit one upstream answer could take any amount of memory.
 * Far above real completions (a few KB; MBs with logprobs, many choices or inline images).
 */
const MAX_COMPLETION_BYTES = 64 << 20;

/** A non-stream answer, whole; 502 `upstream_error` (and the upstream read stopped) past `MAX_COMPLETION_BYTES`. */
async function readWholeAnswer(response: UpstreamResponse, exchange: Exchange): Promise<Buffer> {
  try {
    return await readWholeBody(response.body, MAX_COMPLETION_BYTES);
  } catch (err) {
    throw err instanceof GatewayError ? err : bodyReadError(exchange);
  }
}
