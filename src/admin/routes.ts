/**
 * Admin API: templates, experiments, and assignment lookups, behind a bearer token.
 * Off (404 for everything under /admin) when the token is empty. Handlers throw
 * `GatewayError`s; the app's single `onError` renders them.
 *
 * @example
 * app.route('/', createAdminRoutes(() => ({
 *   token: runtime.config.admin.token,
 *   registry: runtime.config.prompts.registry,
 *   experiments: runtime.config.prompts.experiments,
 *   counters,
 * })));
 */
import { Hono } from 'hono';
import { assign } from '../experiments/assignment.js';
import type { CompiledExperiment } from '../experiments/compile.js';
import type { AssignmentCounters } from '../experiments/counters.js';
import { GatewayError, shown } from '../errors.js';
import { headerText, normalizeUserId } from '../prompts/identity.js';
import type { TemplateRegistry } from '../prompts/registry.js';
import { bearerAuth } from './bearer-auth.js';
import { experimentDetail, experimentSummary, templateDetail, templateSummary } from './views.js';

/** What the admin API reads; fetched once per request so a config reload is seen at once. */
export interface AdminState {
  /** Bearer token; empty turns the admin API off. */
  token: string;
  registry: TemplateRegistry;
  experiments: ReadonlyMap<string, CompiledExperiment>;
  counters: AssignmentCounters;
  /** Clock (tests); defaults to the wall clock. */
  now?: () => Date;
}

/**
 * `user` of `/admin/assign` as the gateway would read the same bytes. Hono keeps escapes
 * that are no UTF-8 (`Zo%EB`, Latin-1 "Zoë") as their literal text, a user the gateway
 * never sees: they are read as the same bytes in `x-user-id` are (UTF-8 when valid, else
 * Latin-1), so the answer is the variant that header would be served.
 */
function userParam(url: string, decoded: string | undefined): string | undefined {
  if (decoded === undefined) return undefined;
  const query = url.indexOf('?');
  const raw = url
    .slice(query + 1)
    .split('&')
    .find((part) => part === 'user' || part.startsWith('user='));
  if (query < 0 || raw === undefined) return decoded;
  const value = raw.slice('user='.length).replace(/\+/g, ' ');
  try {
    return decodeURIComponent(value);
  } catch {
    // Outside the escapes the URL is ASCII; a `%` that starts no escape stays as it is.
    return headerText(value.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))));
  }
}

export function createAdminRoutes(getState: () => AdminState): Hono {
  const admin = new Hono();
  const clock = (s: AdminState): Date => s.now?.() ?? new Date();
  const noStore = { 'cache-control': 'no-store' };

  // `/admin/*` also matches `/admin` itself.
  admin.use('/admin/*', bearerAuth(() => getState().token));

  admin.get('/admin/templates', (c) => {
    const { registry } = getState();
    return c.json({ object: 'list', data: registry.list().map(templateSummary) }, 200, noStore);
  });

  admin.get('/admin/templates/:id', (c) => {
    const id = c.req.param('id');
    const template = getState().registry.get(id);
    if (!template) throw new GatewayError('not_found', `Unknown template "${shown(id)}".`, { param: 'id' });
    return c.json(templateDetail(template), 200, noStore);
  });

  admin.get('/admin/experiments', (c) => {
    const s = getState();
    const now = clock(s);
    return c.json({ object: 'list', data: [...s.experiments.values()].map((e) => experimentSummary(e, now)) }, 200, noStore);
  });

  admin.get('/admin/experiments/:id', (c) => {
    const s = getState();
    const id = c.req.param('id');
    const exp = s.experiments.get(id);
    if (!exp) throw new GatewayError('not_found', `Unknown experiment "${shown(id)}".`, { param: 'id' });
    return c.json(experimentDetail(exp, s.counters, clock(s)), 200, noStore);
  });

  admin.get('/admin/assign', (c) => {
    const s = getState();
    const experimentId = c.req.query('experiment');
    const user = userParam(c.req.url, c.req.query('user'));
    if (!experimentId) throw new GatewayError('invalid_request', 'Query parameter "experiment" is required.', { param: 'experiment' });
    if (user === undefined) throw new GatewayError('invalid_request', 'Query parameter "user" is required.', { param: 'user' });
    const exp = s.experiments.get(experimentId);
    if (!exp) throw new GatewayError('not_found', `Unknown experiment "${shown(experimentId)}".`, { param: 'experiment' });
    // The id as the gateway hashes it (trimmed); an empty one is a request without a user id.
    const a = assign(exp, normalizeUserId(user), clock(s));
    return c.json(
      {
        experiment: exp.id,
        user,
        variant: a.variant.name,
        version: a.variant.version,
        bucket: a.bucket ?? null,
        rollout_bucket: a.rolloutBucket ?? null,
        reason: a.reason,
      },
      200,
      noStore,
    );
  });

  return admin;
}
