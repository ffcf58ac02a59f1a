/**
 * A name the version's context fills is never the client's, also when no configured builder
 * has it (review 23): the client's variable of that name reached the other builders' scope,
 * so a request raised its own refund limit through the tier rules and had the http builder
 * fetch another customer's orders with the service's token.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildContext } from '../../src/context/build.js';
import { ContextRuntime } from '../../src/context/runtime.js';
import { json, makeContext, startJsonService, type JsonService } from './helpers.js';

let svc: JsonService;
let rt: ContextRuntime | undefined;
beforeAll(async () => {
  svc = await startJsonService();
  svc.route(/^\/orders\//, json({ open: 1 }));
});
afterAll(async () => {
  await svc.close();
});
afterEach(async () => {
  await rt?.close();
  rt = undefined;
  svc.requests.length = 0;
});

describe('a builder name in context.use that no configured builder has', () => {
  it("is not filled from the client's variable of that name for the other builders", async () => {
    rt = new ContextRuntime();
    const { plan } = makeContext(
      {
        builders: [
          { name: 'tier_rules', kind: 'rules', defaults: { refund_limit_usd: 50 }, rules: [{ when: { 'customer.tier': 'gold' }, set: { refund_limit_usd: 500 } }] },
          { name: 'orders', kind: 'http', url: `${svc.url}/orders/{{customer.id}}` },
        ],
      },
      { use: ['customer', 'tier_rules', 'orders'] },
      { variables: { customer: { type: 'object', default: { tier: 'standard' } } } },
    );
    expect(plan.unconfigured).toEqual(['customer']);
    const { variables } = await buildContext(rt, plan, { messages: [], userId: 'u1', variables: { customer: { tier: 'gold', id: 'victim-42' } } });
    expect(variables.tier_rules).toEqual({ refund_limit_usd: 50 });
    expect(svc.requests.map((r) => r.url)).toEqual([]);
    expect(variables.orders).toBeUndefined();
  });
});
