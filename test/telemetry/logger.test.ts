import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createLogger, requestLogLine, type LoggerOptions } from '../../src/telemetry/logger.js';
import { redact } from '../../src/telemetry/redact.js';
import type { RequestRecord } from '../../src/telemetry/types.js';

function capture(options: Omit<LoggerOptions, 'write'> = {}) {
  const lines: string[] = [];
  const logger = createLogger({ now: () => new Date('2026-11-20T10:00:00.000Z'), ...options, write: (l) => lines.push(l) });
  return { logger, lines, parsed: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe('createLogger', () => {
  it('writes one JSON line per call with time, level, msg and fields', () => {
    const { logger, lines, parsed } = capture();
    logger.info('listening', { port: 8080, host: '0.0.0.0' });
    expect(lines).toHaveLength(1);
    expect(lines[0].endsWith('\n')).toBe(true);
    expect(lines[0].trimEnd()).not.toContain('\n');
    expect(parsed()[0]).toEqual({ time: '2026-11-20T10:00:00.000Z', level: 'info', msg: 'listening', port: 8080, host: '0.0.0.0' });
  });

  it('filters below the level; silent writes nothing', () => {
    const warn = capture({ level: 'warn' });
    warn.logger.debug('d');
    warn.logger.info('i');
    warn.logger.warn('w');
    warn.logger.error('e');
    expect(warn.parsed().map((l) => l.level)).toEqual(['warn', 'error']);
    const silent = capture({ level: 'silent' });
    silent.logger.error('boom');
    expect(silent.lines).toEqual([]);
  });

  // Regression: logging.level was read once at start; a reloaded config's level was ignored.
  it('changes level with setLevel, for the logger and its children (a config reload)', () => {
    const { logger, parsed } = capture({ level: 'info' });
    const child = logger.child({ component: 'proxy' });
    logger.setLevel('warn');
    logger.info('dropped');
    child.info('dropped too');
    child.warn('kept');
    logger.setLevel('debug');
    child.debug('kept too');
    expect(parsed().map((l) => l.msg)).toEqual(['kept', 'kept too']);
    expect(child.level).toBe('debug');
  });

  it('accepts a bare level (as server.ts calls it) and adds child fields', () => {
    expect(createLogger('error').level).toBe('error');
    const { logger, parsed } = capture({ base: { service: 'promptgate' } });
    logger.child({ component: 'config' }).warn('reload rejected', { errors: ['x'] });
    expect(parsed()[0]).toMatchObject({ service: 'promptgate', component: 'config', msg: 'reload rejected', errors: ['x'] });
  });

  it('serializes errors without stacks and survives cycles', () => {
    const { logger, parsed } = capture();
    const err = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    logger.error('upstream failed', { err });
    expect(parsed()[0].err).toEqual({ name: 'Error', message: 'connect ECONNREFUSED', code: 'ECONNREFUSED' });
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    logger.info('cyclic', { cyclic });
    expect(parsed()[1]).toMatchObject({ msg: 'cyclic', log_error: 'fields not serializable' });
  });

  it('survives EPIPE on stdout (the log reader went away) instead of crashing the process', async () => {
    // A real pipe whose reader is gone: the default writer's next write fails with EPIPE.
    const logger = JSON.stringify(fileURLToPath(new URL('../../src/telemetry/logger.ts', import.meta.url)));
    const script = `
      const { createLogger } = await import(${logger});
      const log = createLogger('info');
      for (let i = 0; i < 40; i++) {
        log.info('request', { i });
        await new Promise((r) => setTimeout(r, 2));
      }
      process.stderr.write('still running');`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const [code] = await once(child, 'exit');
    expect(stderr).not.toContain('EPIPE');
    expect(stderr).toBe('still running');
    expect(code).toBe(0);
  });

  it('redacts keys wherever they appear in a line', () => {
    const { logger, lines } = capture();
    logger.error('upstream said: Incorrect API key provided: sk-proj-abcdefghijklmnop1234', { header: 'Bearer sk-live-zzzzzzzzzzzz' });
    expect(lines[0]).not.toMatch(/abcdefghijklmnop1234|zzzzzzzzzzzz/);
    expect(lines[0]).toContain('sk-***');
  });
});

describe('redact', () => {
  it.each([
    ['Authorization: Bearer sk-abc123456789', 'Authorization: Bearer ***'],
    ['key sk-proj-AbC_d-1234567890xyz used', 'key sk-*** used'],
    ['bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig', 'bearer ***'.replace('bearer', 'Bearer')],
    ['Basic dXNlcjpwYXNzd29yZA==', 'Basic ***'],
    ['https://x.test/v1?api_key=abc123&x=1', 'https://x.test/v1?api_key=***&x=1'],
    ['{"password":"hunter2","x-api-key":"k-1234"}', '{"password":"***","x-api-key":"***"}'],
    ['key=AIzaSyA-1234567890abcdefghijklmnopqrstu', 'key=AIza***'],
    // Regression: an OTLP endpoint with credentials was logged as is ("tracing on").
    ['{"endpoint":"https://tenant:s3cr3t-t0ken@otlp.example.com/v1/traces"}', '{"endpoint":"https://***@otlp.example.com/v1/traces"}'],
  ])('%s', (input, expected) => {
    expect(redact(input)).toBe(expected);
  });

  it('leaves ordinary text alone', () => {
    for (const s of ['risk-assessment-2024 done', 'task-1234567890', 'max_tokens: 100', 'input_tokens=12', 'The bearer of news', 'The bearer instrument was signed']) {
      expect(redact(s)).toBe(s);
    }
  });
});

describe('requestLogLine', () => {
  const record: RequestRecord = {
    requestId: 'req-1',
    route: '/v1/chat/completions',
    method: 'POST',
    status: 200,
    outcome: 'ok',
    stream: true,
    upstream: 'openai',
    provider: 'openai',
    requestModel: 'gpt-4o-mini',
    responseModel: 'gpt-4o-mini-2024-07-18',
    attempts: 2,
    usage: { inputTokens: 1000, outputTokens: 500, cachedInputTokens: 200, reasoningTokens: 0, estimated: false },
    costUsd: 0.1 + 0.2,
    latencyMs: 1234.5678,
    ttfbMs: 87.04,
    template: 'support-reply',
    templateVersion: '1.1.0',
    experiment: 'support-tone',
    variant: 'warm',
    injectionScore: 0.12,
    injectionFlagged: false,
    traceId: '0af7651916cd43dd8448eb211c80319c',
  };

  it('carries ids, timings, tokens, cost and decisions, nothing undefined', () => {
    expect(requestLogLine(record)).toEqual({
      request_id: 'req-1',
      trace_id: '0af7651916cd43dd8448eb211c80319c',
      method: 'POST',
      route: '/v1/chat/completions',
      status: 200,
      outcome: 'ok',
      stream: true,
      upstream: 'openai',
      provider: 'openai',
      model: 'gpt-4o-mini',
      response_model: 'gpt-4o-mini-2024-07-18',
      attempts: 2,
      latency_ms: 1234.6,
      ttfb_ms: 87,
      input_tokens: 1000,
      output_tokens: 500,
      cached_input_tokens: 200,
      cost_usd: 0.3,
      template: 'support-reply',
      template_version: '1.1.0',
      experiment: 'support-tone',
      variant: 'warm',
      injection_score: 0.12,
      injection_flagged: false,
    });
  });

  it('keeps an unknown cost as null and marks estimated usage', () => {
    const line = requestLogLine({ ...record, costUsd: null, usage: { ...record.usage!, estimated: true }, errorType: undefined });
    expect(line.cost_usd).toBeNull();
    expect(line.tokens_estimated).toBe(true);
    expect(Object.values(line)).not.toContain(undefined);
  });

  it('a minimal failed request yields a short line', () => {
    const line = requestLogLine({ requestId: 'r', route: '/v1/*', method: 'GET', status: 502, outcome: 'error', errorType: 'upstream_error', stream: false, attempts: 1, latencyMs: 3 });
    expect(line).toEqual({ request_id: 'r', method: 'GET', route: '/v1/*', status: 502, outcome: 'error', error_type: 'upstream_error', stream: false, attempts: 1, latency_ms: 3 });
  });
});
