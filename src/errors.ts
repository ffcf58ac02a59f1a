/**
 * The one error family of promptgate. Every module throws a `GatewayError` (or lets a
 * plain error escape, which the boundary renders as a generic 500). `onError` in `app.ts`
 * renders every error of a request the app receives; `server.ts` renders only what Node or
 * the adapter refuse before the app sees it (`answerUnparsable`, `answerUnroutable`,
 * `answerNoHost`). Always the OpenAI envelope `{"error": {"message", "type", "param", "code"}}`.
 *
 * Codes are stable: clients and dashboards match on them.
 */

/** OpenAI's `error.type` values, plus the ones a gateway needs. */
export type ErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'server_error'
  | 'timeout_error'
  | 'service_unavailable_error';

/** Stable machine-readable codes and the status/type each maps to. */
export const ERROR_CODES = {
  invalid_json: { status: 400, type: 'invalid_request_error' },
  invalid_request: { status: 400, type: 'invalid_request_error' },
  missing_variable: { status: 400, type: 'invalid_request_error' },
  invalid_variable: { status: 400, type: 'invalid_request_error' },
  context_length_exceeded: { status: 400, type: 'invalid_request_error' },
  unknown_template: { status: 404, type: 'invalid_request_error' },
  prompt_injection_detected: { status: 400, type: 'invalid_request_error' },
  unauthorized: { status: 401, type: 'authentication_error' },
  not_found: { status: 404, type: 'not_found_error' },
  method_not_allowed: { status: 405, type: 'invalid_request_error' },
  request_timeout: { status: 408, type: 'invalid_request_error' },
  body_too_large: { status: 413, type: 'invalid_request_error' },
  headers_too_large: { status: 431, type: 'invalid_request_error' },
  unsupported_media_type: { status: 415, type: 'invalid_request_error' },
  context_unavailable: { status: 424, type: 'server_error' },
  internal_error: { status: 500, type: 'server_error' },
  not_implemented: { status: 501, type: 'invalid_request_error' },
  upstream_error: { status: 502, type: 'server_error' },
  upstream_unavailable: { status: 503, type: 'service_unavailable_error' },
  circuit_open: { status: 503, type: 'service_unavailable_error' },
  shutting_down: { status: 503, type: 'service_unavailable_error' },
  upstream_timeout: { status: 504, type: 'timeout_error' },
  loop_detected: { status: 508, type: 'server_error' },
} as const satisfies Record<string, { status: number; type: ErrorType }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface GatewayErrorOptions {
  /** The request field at fault, as OpenAI reports it (`messages`, `model`, ...). */
  param?: string | null;
  /** Extra response headers, e.g. `retry-after` on 503. */
  headers?: Record<string, string>;
  /** Overrides the status implied by the code (rarely needed). */
  status?: number;
  cause?: unknown;
}

/**
 * An error a client may see. `message` is written for the client: never put an internal
 * message, a stack, a URL with credentials or an API key into it.
 *
 * @example
 * throw new GatewayError('body_too_large', 'Request body exceeds 4194304 bytes.');
 */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly type: ErrorType;
  readonly param: string | null;
  readonly headers: Record<string, string>;

  constructor(code: ErrorCode, message: string, options: GatewayErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GatewayError';
    this.code = code;
    this.status = options.status ?? ERROR_CODES[code].status;
    this.type = ERROR_CODES[code].type;
    this.param = options.param ?? null;
    this.headers = options.headers ?? {};
  }
}

/**
 * 503 `shutting_down`, with `retry-after` and `connection: close`: a new request reaching a
 * draining gateway over a kept-alive connection, or one still waiting for its upstream
 * when the drain time is up.
 */
export function shuttingDownError(): GatewayError {
  return new GatewayError('shutting_down', 'The gateway is shutting down; retry on another instance.', { headers: { 'retry-after': '1', connection: 'close' } });
}

/**
 * Thrown when the client went away before anything was answered (while its body was read,
 * its context built, or upstreams tried). The boundary answers no one: it records a 499
 * `client_abort` and writes nothing.
 */
export class ClientGoneError extends Error {
  constructor() {
    super('client closed the connection');
    this.name = 'ClientGoneError';
  }
}

/**
 * Client input as an error message quotes it: at most `max` characters, since a path or a
 * query value can be as long as the header limit (16 KB).
 *
 * @example
 * throw new GatewayError('not_found', `Unknown template "${shown(id)}".`);
 */
export function shown(input: string, max = 100): string {
  return input.length > max ? `${input.slice(0, max)}...` : input;
}

/** The error of `unknownRouteError`: a `not_found` a route throws for a missing resource is not one. */
class UnknownRouteError extends GatewayError {}

/**
 * 404 `not_found` for a route the gateway does not serve: the path as the client sent it
 * (not percent-decoded), shortened by `shown`. The one message for every unknown route, so
 * a route that is switched off (the admin API without a token) reads like one that never was.
 */
export function unknownRouteError(method: string, url: string): GatewayError {
  return new UnknownRouteError('not_found', `Unknown route: ${method} ${shown(new URL(url).pathname)}`);
}

/**
 * Whether `err` turns a request away because no route serves its method and path: an unknown
 * route (`unknownRouteError`) or a method the path does not take (405 `method_not_allowed`).
 * app.ts records such a request under `route="unmatched"`.
 */
export function isUnmatchedRoute(err: unknown): err is GatewayError {
  return err instanceof UnknownRouteError || (err instanceof GatewayError && err.code === 'method_not_allowed');
}

/** The OpenAI error envelope. */
export interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** Builds the OpenAI error envelope for any thrown value; unknown errors never leak details. */
export function errorBody(err: unknown): { status: number; body: ErrorBody; headers: Record<string, string> } {
  if (err instanceof GatewayError) {
    return {
      status: err.status,
      headers: err.headers,
      body: { error: { message: err.message, type: err.type, param: err.param, code: err.code } },
    };
  }
  return {
    status: 500,
    headers: {},
    body: { error: { message: 'The gateway failed to process the request.', type: 'server_error', param: null, code: 'internal_error' } },
  };
}
