/**
 * Bearer-token check for the admin API. The comparison is constant-time over SHA-256
 * digests, so neither the token's content nor its length leaks through timing.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { GatewayError, unknownRouteError } from '../errors.js';

/** Whether `authorization` is `Bearer <token>` (scheme case-insensitive, RFC 6750 §2.1). */
export function bearerMatches(authorization: string | undefined, token: string): boolean {
  const m = /^Bearer[ ]+(\S+)\s*$/i.exec(authorization ?? '');
  const given = createHash('sha256').update(m?.[1] ?? '').digest();
  const expected = createHash('sha256').update(token).digest();
  return timingSafeEqual(given, expected) && m !== null;
}

/**
 * Middleware guarding a route group: 404 when `getToken()` is empty (the API is off, and
 * says nothing about existing), 401 without the right bearer token. Surrounding whitespace
 * of the configured token is ignored: a header value cannot carry it (a token read from a
 * secret file often ends in a newline), so it would lock everyone out.
 */
export function bearerAuth(getToken: () => string, opts: { realm?: string } = {}): MiddlewareHandler {
  const challenge = `Bearer realm="${opts.realm ?? 'promptgate-admin'}"`;
  return async function adminAuth(c, next) {
    const token = getToken().trim();
    if (token === '') throw unknownRouteError(c.req.method, c.req.url);
    if (!bearerMatches(c.req.header('authorization'), token)) {
      throw new GatewayError('unauthorized', 'Missing or invalid admin bearer token.', { headers: { 'www-authenticate': challenge } });
    }
    await next();
  };
}
