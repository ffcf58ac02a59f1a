/**
 * The per-item token count of a list section against what the renderer writes for one item.
 * Regression: a nested section (`{{#tags}}{{.}}, {{/tags}}`) was counted as if rendered
 * once per item with its tags looked up in the item, so `{{.}}` counted the whole passage
 * as JSON (433 tokens counted, 210 rendered) and `{{author}}` inside `{{#meta}}` counted 0.
 */
import { describe, expect, it } from 'vitest';
import { countAsRendered, splitTemplate } from '../../src/context/item-rendering.js';
import { countTokens } from '../../src/context/tokens.js';
import type { BuilderOutput } from '../../src/context/types.js';
import { compileText, renderText } from '../../src/prompts/renderer.js';

const passage = {
  source: 'refund-policy.md',
  title: 'Refunds',
  text: 'Refunds are issued to the original payment method within 14 days of receiving the returned item. Shipping costs are not refunded unless the item arrived damaged or was not what was ordered. '.repeat(3).trim(),
  tags: ['refund', 'shipping', 'returns'],
  meta: { author: 'Customer Support Team of Acme Incorporated', reviewed: true },
  score: 0.83,
};

/** Tokens counted for one item against tokens rendered for it, for a template that is one list section. */
function countedAndRendered(template: string, value: Record<string, unknown> = passage, variables: Record<string, unknown> = {}) {
  const { perItem } = splitTemplate([compileText(template)], new Set(['knowledge']));
  const output: BuilderOutput = { shape: 'items', items: [{ value, tokens: 0 }], trimFrom: 'end' };
  const counted = countAsRendered(output, perItem.get('knowledge'), variables);
  const rendered = countTokens(renderText(compileText(template), { ...variables, knowledge: [value] }));
  return { counted: counted.shape === 'items' ? counted.items[0].tokens : NaN, rendered };
}

describe('per-item count of a list section', () => {
  it('counts a flat section as rendered', () => {
    const { counted, rendered } = countedAndRendered('{{#knowledge}}[{{source}}] {{text}}\n{{/knowledge}}');
    expect(Math.abs(counted - rendered)).toBeLessThanOrEqual(2);
  });

  it('counts a nested list once per element, {{.}} being the element (was: the whole passage per item)', () => {
    const { counted, rendered } = countedAndRendered('{{#knowledge}}{{text}} tags: {{#tags}}{{.}}, {{/tags}}\n{{/knowledge}}');
    expect(Math.abs(counted - rendered)).toBeLessThanOrEqual(3);
  });

  it('counts the tags of a nested object section from that object (was: 0)', () => {
    const { counted, rendered } = countedAndRendered('{{#knowledge}}{{text}} by {{#meta}}{{author}}{{/meta}}\n{{/knowledge}}');
    expect(Math.abs(counted - rendered)).toBeLessThanOrEqual(2);
  });

  it('counts nothing for a nested section over a missing, false or empty value', () => {
    const template = '{{#knowledge}}{{text}}{{#tags}} tagged {{.}} and more words here{{/tags}}{{#meta}} by {{author}} of the team{{/meta}}\n{{/knowledge}}';
    const bare = { ...passage, tags: [], meta: false };
    const { counted, rendered } = countedAndRendered(template, bare);
    expect(Math.abs(counted - rendered)).toBeLessThanOrEqual(2);
  });

  it('counts an inverted section only when its value is falsy or empty', () => {
    const template = '{{#knowledge}}{{text}}{{^tags}} (this passage has no tags at all, so treat it with some care){{/tags}}\n{{/knowledge}}';
    for (const value of [passage, { ...passage, tags: [] }]) {
      const { counted, rendered } = countedAndRendered(template, value);
      expect(Math.abs(counted - rendered)).toBeLessThanOrEqual(2);
    }
  });

  it('resolves a nested section’s tags in the element, then the item, then the client variables', () => {
    const template = '{{#knowledge}}{{#tags}}{{.}} from {{source}} for {{company}}; {{/tags}}{{/knowledge}}';
    const company = 'Acme Incorporated Worldwide Holdings';
    const { counted, rendered } = countedAndRendered(template, passage, { company });
    expect(rendered).toBeGreaterThan(3 * countTokens(company));
    expect(Math.abs(counted - rendered)).toBeLessThanOrEqual(4);
  });

  it('counts a section nested two deep once per element of each', () => {
    const template = '{{#knowledge}}{{#groups}}{{name}}: {{#members}}{{.}} {{/members}}\n{{/groups}}{{/knowledge}}';
    const value = { ...passage, groups: [{ name: 'owners', members: ['alice', 'bob'] }, { name: 'readers', members: ['carol', 'dave', 'erin'] }] };
    const { counted, rendered } = countedAndRendered(template, value);
    expect(Math.abs(counted - rendered)).toBeLessThanOrEqual(3);
  });
});
