/**
 * Structured logging: one JSON object a line on stdout, `{"time","level","msg",...fields}`.
 * Lines never carry request bodies; every line passes through `redact` (redact.ts) so a key
 * that slips into a message or an upstream error text is masked anyway.
 */
import { formatUsd } from './pricing.js';
import { redact, SECRET_FIELD } from './redact.js';
import type { RequestRecord } from './types.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
export type LogFields = Record<string, unknown>;

export interface Logger {
  /** The current level (shared with every child: a config reload sets it for all). */
  readonly level: LogLevel;
  setLevel(level: LogLevel): void;
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line. */
  child(fields: LogFields): Logger;
}

export interface LoggerOptions {
  level?: LogLevel;
  /** Where lines go (each ends with `\n`); default stdout. */
  write?: (line: string) => void;
  /** Fields on every line. */
  base?: LogFields;
  /** Clock, for tests. */
  now?: () => Date;
}

const SEVERITY: Readonly<Record<LogLevel, number>> = { debug: 10, info: 20, warn: 30, error: 40, silent: Infinity };

/**
 * @example
 * const logger = createLogger('info');
 * logger.info('request', requestLogLine(record));
 * // {"time":"2026-11-20T10:00:00.000Z","level":"info","msg":"request","request_id":"...",...}
 */
export function createLogger(options: LogLevel | LoggerOptions = {}): Logger {
  const opts = typeof options === 'string' ? { level: options } : options;
  const level = opts.level ?? 'info';
  const write = opts.write ?? streamWriter(process.stdout);
  const now = opts.now ?? (() => new Date());
  return makeLogger(level, write, now, opts.base ?? {});
}

/** Streams that already have the error listener `streamWriter` adds (loggers are made more than once). */
const guarded = new WeakSet<NodeJS.WritableStream>();

/**
 * Writes lines to `stream`, which may go away: stdout piped into a log shipper that exited
 * fails the next write with EPIPE, and an 'error' event nobody listens to would crash the
 * gateway. Such errors are ignored (there is nowhere left to report them) and later lines
 * are dropped.
 */
function streamWriter(stream: NodeJS.WritableStream & { destroyed?: boolean }): (line: string) => void {
  if (!guarded.has(stream)) {
    guarded.add(stream);
    stream.on('error', () => {});
  }
  return (line) => {
    if (!stream.destroyed) stream.write(line);
  };
}

/** The level a logger and its children share. */
interface LevelHolder {
  level: LogLevel;
  threshold: number;
}

function makeLogger(initial: LogLevel | LevelHolder, write: (line: string) => void, now: () => Date, base: LogFields): Logger {
  const shared = typeof initial === 'string' ? { level: initial, threshold: SEVERITY[initial] } : initial;
  const log = (lineLevel: Exclude<LogLevel, 'silent'>) => (msg: string, fields?: LogFields) => {
    if (SEVERITY[lineLevel] < shared.threshold) return;
    write(redact(serialize({ time: now().toISOString(), level: lineLevel, msg, ...base, ...fields })) + '\n');
  };
  return {
    get level() {
      return shared.level;
    },
    setLevel(level: LogLevel) {
      shared.level = level;
      shared.threshold = SEVERITY[level];
    },
    debug: log('debug'),
    info: log('info'),
    warn: log('warn'),
    error: log('error'),
    child: (fields) => makeLogger(shared, write, now, { ...base, ...fields }),
  };
}

function serialize(line: LogFields): string {
  try {
    return JSON.stringify(line, (key, value: unknown) => {
      if (value !== undefined && value !== '' && SECRET_FIELD.test(key)) return '***';
      if (value instanceof Error) return { name: value.name, message: value.message, ...('code' in value ? { code: value.code } : {}) };
      if (typeof value === 'bigint') return value.toString();
      return value;
    });
  } catch {
    return JSON.stringify({ time: line.time, level: line.level, msg: String(line.msg), log_error: 'fields not serializable' });
  }
}

/**
 * The one-line-per-request record: ids (the upstream's request id too), route (and the
 * path of a request no route serves, whose route is `unmatched`), status,
 * error (with the upstream's error code), upstream, model, timings, tokens, cost,
 * template/experiment and injection score and signals. No bodies, no keys, no user id.
 */
export function requestLogLine(r: RequestRecord): LogFields {
  const fields: LogFields = {
    request_id: r.requestId,
    trace_id: r.traceId,
    method: r.method,
    route: r.route,
    path: r.path,
    status: r.status,
    outcome: r.outcome,
    error_type: r.errorType,
    upstream_error_code: r.upstreamErrorCode,
    stream: r.stream,
    upstream: r.upstream,
    provider: r.provider,
    upstream_request_id: r.upstreamRequestId,
    model: r.requestModel,
    response_model: r.responseModel,
    attempts: r.attempts,
    latency_ms: round(r.latencyMs),
    ttfb_ms: r.ttfbMs === undefined ? undefined : round(r.ttfbMs),
    input_tokens: r.usage?.inputTokens,
    output_tokens: r.usage?.outputTokens,
    cached_input_tokens: r.usage?.cachedInputTokens || undefined,
    reasoning_tokens: r.usage?.reasoningTokens || undefined,
    tokens_estimated: r.usage?.estimated || undefined,
    cost_usd: typeof r.costUsd === 'number' ? Number(formatUsd(r.costUsd)) : r.costUsd,
    template: r.template,
    template_version: r.templateVersion,
    experiment: r.experiment,
    variant: r.variant,
    injection_score: r.injectionScore,
    injection_flagged: r.injectionFlagged,
    injection_signals: r.injectionSignals,
  };
  for (const key of Object.keys(fields)) if (fields[key] === undefined) delete fields[key];
  return fields;
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

/**
 * Reports a fault in a request's accounting (metrics, span, log line, usage reading): one
 * error line naming the request, its route and the error's class, never its message (it may
 * quote the request). Accounting runs beside the relay, often outside any handler (a
 * stream's end, a request Node refused): a fault there must neither cut what the client
 * receives nor end the process.
 */
export function logAccountingFault(logger: Pick<Logger, 'error'>, record: Pick<RequestRecord, 'requestId' | 'route'>, err: unknown): void {
  logger.error('accounting failed', { request_id: record.requestId, route: record.route, error: err instanceof Error ? err.name : typeof err });
}
