import { describe, expect, it } from 'vitest';
import { compileExperiments } from '../experiments/compile.js';
import { testRegistry } from '../experiments/test-helpers.js';
import { GatewayError } from '../errors.js';
import { compileBindings } from './bindings.js';
import { experimentSchema } from '../experiments/config-schema.js';
import { bindingSchema } from './config-schema.js';
import { compileTemplate } from './compile-template.js';
import { TemplateRegistry } from './registry.js';
import { applySelection, collectVariables, selectTemplate, toolRequestOf, type Selection, type SelectionInput } from './selection.js';

const NOW = new Date('2026-12-01T00:00:00Z');

function setup() {
  const base = testRegistry().get('t')!;
  const { template: support } = compileTemplate({
    id: 'support',
    versions: [
      {
        version: '2.0.0',
        labels: ['production'],
        model: 'gpt-4o-mini',
        params: { temperature: 0.2, max_tokens: 300, extra_body: { metadata: { team: 'support' } } },
        constraints: { max_output_tokens: 500, response_format: { type: 'json_object' } },
        variables: {
          company: { type: 'string', default: 'Acme' },
          customer_name: { type: 'string', required: true },
          order_count: { type: 'number' },
          vip: { type: 'boolean' },
          tags: { type: 'array' },
        },
        messages: [
          { role: 'system', content: 'Support for {{company}}. Customer {{customer_name}}{{#vip}} (VIP){{/vip}}, {{order_count}} orders.' },
          { role: 'system', content: '{{#tags}}#{{.}} {{/tags}}' },
        ],
      },
    ],
  });
  const registry = new TemplateRegistry([base, support!]);
  const experiments = compileExperiments(
    [
      experimentSchema.parse({
        id: 'support-tone-v1',
        template: 't',
        variants: [{ name: 'control', version: '1.0.0', weight: 50 }, { name: 'warm', version: '1.1.0', weight: 50 }],
        start: '2026-11-20T00:00:00Z',
        end: '2026-12-20T00:00:00Z',
      }),
    ],
    registry,
  );
  const bindings = compileBindings(
    [
      bindingSchema.parse({ model: 'support-bot', experiment: 'support-tone-v1' }),
      bindingSchema.parse({ model: 'fixed-bot', template: 't@staging', mode: 'prepend', upstream_model: 'gpt-4.1' }),
    ],
    { registry, experiments: experiments.experiments },
  );
  expect([...experiments.issues, ...bindings.issues]).toEqual([]);
  return { registry, bindings: bindings.bindings };
}

const { registry, bindings } = setup();

function input(body: Record<string, unknown>, headers: Record<string, string> = {}, userId?: string): SelectionInput {
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  return { body, header: (name) => lower[name], registry, bindings, userId, now: NOW };
}

describe('selectTemplate: order', () => {
  it('returns null for a plain request (pass-through)', () => {
    expect(selectTemplate(input({ model: 'gpt-4o', messages: [] }))).toBeNull();
  });

  it('body prompt_id wins over the header and the binding', () => {
    const sel = selectTemplate(input({ model: 'support-bot', prompt_id: 't', prompt_version: '1.2.0' }, { 'x-promptgate-template': 'support' }, 'user-123'));
    expect(sel).toMatchObject({ templateId: 't', version: '1.2.0', assignmentReason: 'explicit', bindingModel: 'support-bot' });
    expect(sel?.experimentId).toBeUndefined();
  });

  it('accepts id@version and id@label in prompt_id', () => {
    expect(selectTemplate(input({ prompt_id: 't@staging' }))?.version).toBe('1.1.0');
    expect(selectTemplate(input({ prompt_id: 't' }))?.version).toBe('1.0.0');
  });

  it('the header wins over the binding; id@label form', () => {
    const sel = selectTemplate(input({ model: 'support-bot' }, { 'X-PromptGate-Template': 't@staging' }, 'user-123'));
    expect(sel).toMatchObject({ templateId: 't', version: '1.1.0', assignmentReason: 'explicit' });
  });

  it('a body prompt_version pins the header template version', () => {
    expect(selectTemplate(input({ prompt_version: '1.2.0' }, { 'x-promptgate-template': 't@staging' }))?.version).toBe('1.2.0');
  });

  it('a body prompt_version alone pins the version of the bound template', () => {
    expect(selectTemplate(input({ model: 'support-bot', prompt_version: '1.2.0' }, {}, 'user-123'))).toMatchObject({
      templateId: 't',
      version: '1.2.0',
      assignmentReason: 'explicit',
    });
  });

  it('binding -> experiment -> assigned variant -> version (DESIGN.md vectors)', () => {
    expect(selectTemplate(input({ model: 'support-bot' }, {}, 'user-123'))).toMatchObject({
      templateId: 't',
      version: '1.1.0',
      experimentId: 'support-tone-v1',
      variant: 'warm',
      assignmentReason: 'assigned',
      mode: 'replace',
    });
    expect(selectTemplate(input({ model: 'support-bot' }, {}, 'alice@example.com'))).toMatchObject({ variant: 'control', version: '1.0.0' });
    expect(selectTemplate(input({ model: 'support-bot' }))).toMatchObject({ variant: 'control', assignmentReason: 'no_user' });
  });

  it('binding -> template reference', () => {
    expect(selectTemplate(input({ model: 'fixed-bot' }))).toMatchObject({
      templateId: 't',
      version: '1.1.0',
      assignmentReason: 'binding',
      mode: 'prepend',
      upstreamModel: 'gpt-4.1',
    });
  });
});

describe('selectTemplate: errors', () => {
  it('unknown template -> 404 unknown_template, param prompt_id (null when the header named it: no body field did)', () => {
    expect(catchError(() => selectTemplate(input({ prompt_id: 'nope' })))).toMatchObject({ code: 'unknown_template', status: 404, param: 'prompt_id' });
    for (const ref of ['nope@1.0.0', 'nope', 't@9.0.0']) {
      expect(catchError(() => selectTemplate(input({}, { 'x-promptgate-template': ref })))).toMatchObject({ code: 'unknown_template', status: 404, param: null });
    }
    expect(catchError(() => selectTemplate(input({}, { 'x-promptgate-template': '@1.0.0' })))).toMatchObject({ code: 'invalid_request', param: null });
  });

  it('unknown version or label -> unknown_template naming the field', () => {
    expect(catchError(() => selectTemplate(input({ prompt_id: 't', prompt_version: '9.0.0' })))).toMatchObject({ code: 'unknown_template', param: 'prompt_version' });
    expect(catchError(() => selectTemplate(input({ prompt_id: 't@qa' })))).toMatchObject({ code: 'unknown_template', param: 'prompt_id' });
  });

  it('quotes at most 100 characters of a huge prompt_id or prompt_version (was: the whole value echoed back)', () => {
    const long = 'x'.repeat(100_000);
    for (const body of [{ prompt_id: long }, { prompt_id: 't', prompt_version: long }, { prompt_id: `t@${long}`, prompt_version: '1.0.0' }]) {
      const err = catchError(() => selectTemplate(input(body))) as GatewayError;
      expect(err).toBeInstanceOf(GatewayError);
      expect(err.message).toContain(`"${'x'.repeat(100)}..."`);
      expect(err.message.length).toBeLessThan(300);
    }
  });

  it('rejects malformed prompt_* fields and prompt_* without a template', () => {
    expect(catchError(() => selectTemplate(input({ prompt_id: 42 })))).toMatchObject({ code: 'invalid_request', param: 'prompt_id' });
    expect(catchError(() => selectTemplate(input({ prompt_id: 't', prompt_variables: 'x' })))).toMatchObject({ code: 'invalid_request', param: 'prompt_variables' });
    expect(catchError(() => selectTemplate(input({ model: 'gpt-4o', prompt_variables: { a: 1 } })))).toMatchObject({ code: 'invalid_request', param: 'prompt_variables' });
    expect(catchError(() => selectTemplate(input({ model: 'gpt-4o', prompt_version: '1.0.0' })))).toMatchObject({ code: 'invalid_request', param: 'prompt_version' });
  });

  // Regression: `t@` silently served the default version, and prompt_version silently won
  // over a different version named in prompt_id.
  it('rejects a reference cut short (`id@`) and two different versions named at once', () => {
    expect(catchError(() => selectTemplate(input({ prompt_id: 't@' })))).toMatchObject({ code: 'invalid_request', status: 400, param: 'prompt_id' });
    expect(catchError(() => selectTemplate(input({}, { 'x-promptgate-template': 't@ ' })))).toMatchObject({ code: 'invalid_request', param: null });
    expect(catchError(() => selectTemplate(input({ prompt_id: 't@1.0.0', prompt_version: '1.1.0' })))).toMatchObject({ code: 'invalid_request', param: 'prompt_version' });
    expect(selectTemplate(input({ prompt_id: 't@1.0.0', prompt_version: '1.0.0' }))?.version).toBe('1.0.0');
  });
});

describe('collectVariables', () => {
  const sel = selectTemplate(input({ prompt_id: 'support' }))!;

  it('coerces header strings to the declared types; body values win', () => {
    const headers = {
      'x-promptgate-var-customer_name': 'Header Name',
      'x-promptgate-var-order_count': '42',
      'x-promptgate-var-vip': 'true',
      'x-promptgate-var-tags': '["a","b"]',
      'x-promptgate-var-undeclared': 'ignored',
    };
    const h = input({}, headers).header;
    expect(collectVariables({ prompt_variables: { customer_name: 'Body Name' } }, h, sel)).toEqual({
      customer_name: 'Body Name',
      order_count: 42,
      vip: true,
      tags: ['a', 'b'],
    });
  });

  it('accepts dashes for underscores in header names', () => {
    expect(collectVariables({}, input({}, { 'x-promptgate-var-customer-name': 'Ada' }).header, sel)).toEqual({ customer_name: 'Ada' });
  });

  it('rejects header values that do not convert', () => {
    expect(catchError(() => collectVariables({}, input({}, { 'x-promptgate-var-order_count': 'many' }).header, sel))).toMatchObject({
      code: 'invalid_variable',
      param: 'prompt_variables.order_count',
    });
    expect(catchError(() => collectVariables({}, input({}, { 'x-promptgate-var-vip': 'yes please' }).header, sel))).toMatchObject({ code: 'invalid_variable' });
  });
});

describe('applySelection', () => {
  const clientMessages = [
    { role: 'system', content: 'client system' },
    { role: 'user', content: 'hi' },
    { role: 'developer', content: 'client developer' },
    { role: 'assistant', content: 'hello' },
    { role: 'tool', tool_call_id: 'c1', content: '{}' },
    { role: 'user', content: 'again' },
  ];

  it('replace: template messages replace system/developer ones; other turns kept in order; prompt_* stripped', () => {
    const body = { model: 'support-bot', messages: clientMessages, prompt_id: 't', prompt_version: '1.1.0', prompt_variables: { who: 'Ada' }, stream: true };
    const sel = selectTemplate(input(body))!;
    const out = applySelection(body, sel, collectVariables(body, () => undefined, sel));
    expect(out.messages).toEqual([{ role: 'system', content: 'v1.1 Ada' }, ...clientMessages.filter((m) => m.role !== 'system' && m.role !== 'developer')]);
    expect(Object.keys(out).filter((k) => k.startsWith('prompt_'))).toEqual([]);
    expect(out.stream).toBe(true);
    expect(body.prompt_id).toBe('t'); // input untouched
  });

  it('prepend: template messages go before all client messages', () => {
    const body = { model: 'fixed-bot', messages: clientMessages };
    const sel = selectTemplate(input(body))!;
    const out = applySelection(body, sel, {});
    expect(out.messages).toEqual([{ role: 'system', content: 'v1.1 you' }, ...clientMessages]);
  });

  it('model: binding upstream_model, else the version model, else the request model; an alias is not forwarded when a model is known', () => {
    const fixed = applySelection({ model: 'fixed-bot' }, selectTemplate(input({ model: 'fixed-bot' }))!, {});
    expect(fixed.model).toBe('gpt-4.1');
    const versionModel = selectTemplate(input({ model: 'support-bot', prompt_id: 'support' }))!;
    expect(applySelection({ model: 'support-bot' }, versionModel, { customer_name: 'A' }).model).toBe('gpt-4o-mini');
    const none = selectTemplate(input({ model: 'support-bot' }, {}, 'user-123'))!;
    expect(applySelection({ model: 'support-bot' }, none, {}).model).toBe('support-bot');
  });

  it('params fill only fields the client did not set; extra_body likewise', () => {
    const sel = selectTemplate(input({ prompt_id: 'support' }))!;
    const out = applySelection({ temperature: 0.9, metadata: { mine: true } }, sel, { customer_name: 'A' });
    expect(out.temperature).toBe(0.9);
    expect(out.max_tokens).toBe(300);
    expect(out.metadata).toEqual({ mine: true });
    expect(applySelection({}, sel, { customer_name: 'A' }).metadata).toEqual({ team: 'support' });
  });

  it('params: a version max_tokens is not added next to the client max_completion_tokens (upstream rejects both at once)', () => {
    const sel = selectTemplate(input({ prompt_id: 'support' }))!;
    const out = applySelection({ max_completion_tokens: 200 }, sel, { customer_name: 'A' });
    expect(out.max_completion_tokens).toBe(200);
    expect(out).not.toHaveProperty('max_tokens');
    const { template } = compileTemplate({ id: 'c', versions: [{ version: '1.0.0', params: { max_completion_tokens: 64 }, messages: [{ role: 'system', content: 's' }] }] });
    const version = template!.defaultVersion;
    const legacy: Selection = { templateId: 'c', version: '1.0.0', templateVersion: version, assignmentReason: 'explicit', mode: 'replace' };
    expect(applySelection({ max_tokens: 32 }, legacy, {})).toEqual({ max_tokens: 32, messages: [{ role: 'system', content: 's' }] });
  });

  it('constraints: max_output_tokens caps the client value, response_format is forced', () => {
    const sel = selectTemplate(input({ prompt_id: 'support' }))!;
    const out = applySelection({ max_tokens: 4000, max_completion_tokens: 100, response_format: { type: 'text' } }, sel, { customer_name: 'A' });
    expect(out.max_tokens).toBe(500);
    expect(out.max_completion_tokens).toBe(100);
    expect(out.response_format).toEqual({ type: 'json_object' });
  });

  it('constraints: sets max_completion_tokens when no output limit is present at all', () => {
    const { template } = compileTemplate({ id: 'c', versions: [{ version: '1.0.0', constraints: { max_output_tokens: 64 }, messages: [{ role: 'system', content: 's' }] }] });
    const version = template!.defaultVersion;
    const sel: Selection = { templateId: 'c', version: '1.0.0', templateVersion: version, assignmentReason: 'explicit', mode: 'replace' };
    expect(applySelection({ messages: [] }, sel, {})).toMatchObject({ max_completion_tokens: 64 });
  });

  it('renders typed variables, and fails naming a missing required one', () => {
    const sel = selectTemplate(input({ prompt_id: 'support' }))!;
    const out = applySelection({ messages: [] }, sel, { customer_name: 'Ada', vip: true, order_count: 3, tags: ['x', 'y'] });
    expect(out.messages).toEqual([
      { role: 'system', content: 'Support for Acme. Customer Ada (VIP), 3 orders.' },
      { role: 'system', content: '#x #y ' },
    ]);
    expect(catchError(() => applySelection({}, sel, {}))).toMatchObject({ code: 'missing_variable', param: 'prompt_variables.customer_name' });
  });

  it('rejects non-array messages', () => {
    const sel = selectTemplate(input({ prompt_id: 't' }))!;
    expect(catchError(() => applySelection({ messages: 'hi' }, sel, {}))).toMatchObject({ code: 'invalid_request', param: 'messages' });
  });
});

describe('compileBindings', () => {
  it('reports unknown experiments and templates, and duplicate aliases, with their paths', () => {
    const { issues } = compileBindings(
      [
        bindingSchema.parse({ model: 'a', experiment: 'nope' }),
        bindingSchema.parse({ model: 'b', template: 't@qa' }),
        bindingSchema.parse({ model: 'c', template: 't' }),
        bindingSchema.parse({ model: 'c', template: 't' }),
      ],
      { registry, experiments: new Map() },
    );
    expect(issues).toEqual([
      { path: 'bindings[0].experiment', message: 'unknown experiment "nope"' },
      { path: 'bindings[1].template', message: 'unknown template, version or label "t@qa"' },
      { path: 'bindings[3].model', message: 'model "c" is bound twice' },
    ]);
  });

  it('schema: exactly one of experiment or template', () => {
    expect(bindingSchema.safeParse({ model: 'a' }).success).toBe(false);
    expect(bindingSchema.safeParse({ model: 'a', experiment: 'e', template: 't' }).success).toBe(false);
  });
});

function catchError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected an error');
}

describe('applySelection: shared template data', () => {
  it('template params copied into a body cannot be mutated by a later stage', () => {
    const { template } = compileTemplate({
      id: 'tools',
      versions: [{ version: '1.0.0', params: { tools: [{ type: 'function', function: { name: 'f' } }] }, messages: [{ role: 'system', content: 's' }] }],
    });
    const version = template!.defaultVersion;
    const sel: Selection = { templateId: 'tools', version: '1.0.0', templateVersion: version, assignmentReason: 'explicit', mode: 'replace' };
    const out = applySelection({}, sel, {});
    expect(() => (out.tools as unknown[]).push('x')).toThrow(TypeError);
    expect(applySelection({}, sel, {}).tools).toEqual([{ type: 'function', function: { name: 'f' } }]);
  });
});

describe('toolRequestOf', () => {
  // The context budget counts the tools before the body is built (`toolRequestOf`), the cap
  // check and the estimate after (`applySelection`): the two must name the same tools and model.
  const versionTool = { type: 'function', function: { name: 'lookup_order', parameters: { type: 'object', properties: { id: { type: 'string' } } } } };
  const clientTool = { type: 'function', function: { name: 'client_tool', parameters: { type: 'object' } } };
  const legacy = [{ name: 'legacy_fn', parameters: { type: 'object' } }];
  const { template: agent } = compileTemplate({
    id: 'agent',
    versions: [
      { version: '1.0.0', model: 'gpt-4.1', params: { tools: [versionTool] }, messages: [{ role: 'system', content: 'You help.' }] },
      { version: '2.0.0', messages: [{ role: 'system', content: 'You help.' }] },
    ],
  });
  const agentRegistry = new TemplateRegistry([agent!]);
  const selected = (body: Record<string, unknown>) => selectTemplate({ body, header: () => undefined, registry: agentRegistry, bindings, userId: undefined, now: NOW })!;

  it.each([
    ['the version fills tools the client did not send', { model: 'x', prompt_id: 'agent@1.0.0' }],
    ['a null tools is filled too', { model: 'x', prompt_id: 'agent@1.0.0', tools: null }],
    ["the client's tools win", { model: 'x', prompt_id: 'agent@1.0.0', tools: [clientTool] }],
    ['legacy functions next to the version tools', { model: 'x', prompt_id: 'agent@1.0.0', functions: legacy }],
    ["no version model: the client's", { model: 'gpt-4', prompt_id: 'agent@2.0.0', tools: [clientTool] }],
  ])('%s', (_name, body) => {
    const selection = selected(body);
    const sent = applySelection(body, selection, {});
    expect(toolRequestOf(body, selection)).toEqual({ tools: sent.tools, functions: sent.functions, model: sent.model });
  });
});
