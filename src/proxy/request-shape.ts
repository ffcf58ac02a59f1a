/**
 * The minimal checks every JSON request gets before the pipeline reads it.
 */
import type { Context } from 'hono';
import type { AppEnv } from '../app-types.js';
import { GatewayError } from '../errors.js';

/** 415 unless the content type is JSON (`application/json`, `application/*+json`). */
export function requireJson(contentType: string | undefined): void {
  const type = contentType?.split(';')[0].trim().toLowerCase();
  if (type === 'application/json' || (type?.startsWith('application/') && type.endsWith('+json'))) return;
  throw new GatewayError('unsupported_media_type', `Expected Content-Type application/json, got ${type ? JSON.stringify(type.slice(0, 100)) : 'none'}.`);
}

/** Parses a JSON object body; 400 `invalid_json` for anything else. */
export function parseJsonObject(raw: Uint8Array): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('utf8'));
  } catch {
    throw new GatewayError('invalid_json', 'We could not parse the JSON body of your request. Send a valid JSON object.');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new GatewayError('invalid_json', 'The request body must be a JSON object.');
  }
  return value as Record<string, unknown>;
}

/** 503 for new requests once the gateway drains (they reach it over kept-alive connections). */
export function refuseWhileDraining(deps: { lifecycle: { draining: boolean } }): void {
  if (deps.lifecycle.draining) {
    throw new GatewayError('shutting_down', 'The gateway is shutting down; retry on another instance.', { headers: { 'retry-after': '1', connection: 'close' } });
  }
}

/** Incoming header lookup without building a Web `Headers` object. */
export function headerGetter(c: Context<AppEnv>): (name: string) => string | undefined {
  const incoming = c.env?.incoming;
  if (!incoming) return (name) => c.req.header(name);
  return (name) => {
    const v = incoming.headers[name];
    return Array.isArray(v) ? v[0] : v;
  };
}
