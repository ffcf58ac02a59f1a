import { describe, expect, it } from 'vitest';
import { GatewayError } from '../errors.js';
import { collectReferences, compileText, renderText, TemplateSyntaxError } from './renderer.js';
import { TemplateVersion } from './registry.js';
import { templateVersionSchema } from './template-schema.js';

const render = (text: string, view: Record<string, unknown>) => renderText(compileText(text), view);

describe('renderText', () => {
  it('inserts variables without HTML escaping', () => {
    expect(render('Hi {{name}} / {{{name}}} / {{&name}}', { name: '<b>"Tom" & Jerry\'s</b>' })).toBe(
      'Hi <b>"Tom" & Jerry\'s</b> / <b>"Tom" & Jerry\'s</b> / <b>"Tom" & Jerry\'s</b>',
    );
  });

  it('resolves dotted paths and renders missing ones as empty', () => {
    const view = { order: { id: 42, customer: { name: 'Ada' } } };
    expect(render('#{{order.id}} for {{order.customer.name}}{{order.missing.deep}}.', view)).toBe('#42 for Ada.');
  });

  it('iterates list sections, with {{.}} for scalars and item fields for objects', () => {
    expect(render('{{#tags}}[{{.}}]{{/tags}}', { tags: ['a', 'b', 'c'] })).toBe('[a][b][c]');
    const items = [{ title: 'One', qty: 1 }, { title: 'Two', qty: 2 }];
    expect(render('{{#items}}{{title}} x{{qty}} ({{shop}});{{/items}}', { items, shop: 'S' })).toBe('One x1 (S);Two x2 (S);');
  });

  it('enters object sections once and skips falsy ones; inverted sections render on empty', () => {
    expect(render('{{#user}}{{name}}{{/user}}', { user: { name: 'Bo' } })).toBe('Bo');
    expect(render('{{#flag}}yes{{/flag}}{{^flag}}no{{/flag}}', { flag: false })).toBe('no');
    expect(render('{{#items}}x{{/items}}{{^items}}none{{/items}}', { items: [] })).toBe('none');
    expect(render('{{^missing}}default{{/missing}}', {})).toBe('default');
  });

  it('follows the spec for standalone section lines (no blank lines left behind)', () => {
    const text = 'A\n{{#p}}\nabout {{p}}\n{{/p}}\nB';
    expect(render(text, { p: 'X' })).toBe('A\nabout X\nB');
    expect(render(text, {})).toBe('A\nB');
  });

  it('renders objects and arrays interpolated directly as JSON, numbers and booleans as text', () => {
    expect(render('{{o}} {{a}} {{n}} {{b}}', { o: { k: 1 }, a: [1, 'x'], n: 2.5, b: true })).toBe('{"k":1} [1,"x"] 2.5 true');
  });

  it('answers 400 invalid_variable for a value nested too deeply to render as JSON (was: a RangeError, a 500)', () => {
    const deep = JSON.parse('['.repeat(100_000) + ']'.repeat(100_000));
    for (const text of ['{{o}}', '{{#o}}{{.}}{{/o}}']) {
      let err: unknown;
      try {
        render(text, { o: text === '{{o}}' ? deep : { k: deep } });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(GatewayError);
      expect(err).toMatchObject({ code: 'invalid_variable', status: 400, param: 'prompt_variables' });
    }
  });

  it('looks up own properties only', () => {
    expect(render('[{{constructor}}][{{toString}}][{{o.__proto__}}]', { o: {} })).toBe('[][][]');
  });

  it('ignores comments and supports delimiter changes', () => {
    expect(render('a{{! note }}b{{=<% %>=}}<%x%>', { x: 1 })).toBe('ab1');
  });

  it('rejects partials and unclosed sections at compile time', () => {
    expect(() => compileText('{{> header}}')).toThrow(TemplateSyntaxError);
    expect(() => compileText('{{#a}}open')).toThrow(/Unclosed section "a"/);
  });

  it('drops comments and delimiter changes from text without variables', () => {
    expect(render('Be brief.{{! TODO: tone }} Be kind.', {})).toBe('Be brief. Be kind.');
    expect(render('Line one\n{{! internal note }}\nLine two', {})).toBe('Line one\nLine two');
    expect(render('{{=<% %>=}}Plain text', {})).toBe('Plain text');
  });

  it('returns static text without walking', () => {
    const c = compileText('no tags here');
    expect(c.isStatic).toBe(true);
    expect(renderText(c, {})).toBe('no tags here');
  });
});

describe('collectReferences', () => {
  const kinds = new Map([
    ['name', 'string'],
    ['items', 'array'],
    ['flag', 'boolean'],
  ]);

  it('requires top-level names to be declared, lets list items carry their own fields', () => {
    const refs = collectReferences(compileText('{{name}} {{#items}}{{title}} {{name}}{{/items}} {{other.x}}'), kinds);
    expect([...refs.used].sort()).toEqual(['items', 'name']);
    expect(refs.undeclared).toEqual(['other']);
  });

  it('checks names inside sections over scalars and inverted sections like top-level ones', () => {
    expect(collectReferences(compileText('{{#flag}}{{nope}}{{/flag}}{{^items}}{{also}}{{/items}}'), kinds).undeclared).toEqual(['nope', 'also']);
  });

  it('flags {{.}} outside a section', () => {
    expect(collectReferences(compileText('{{.}}'), kinds).dotAtTop).toBe(true);
    expect(collectReferences(compileText('{{#items}}{{.}}{{/items}}'), kinds).dotAtTop).toBe(false);
  });
});

describe('TemplateVersion.render (typed variables)', () => {
  const version = new TemplateVersion(
    't',
    templateVersionSchema.parse({
      version: '1.0.0',
      variables: {
        name: { type: 'string', required: true },
        count: { type: 'number', default: 3 },
        vip: { type: 'boolean' },
        items: { type: 'array' },
      },
      messages: [
        { role: 'system', content: 'Hello {{name}}, {{count}} items{{#vip}} (VIP){{/vip}}.' },
        { role: 'user', content: '{{#items}}- {{.}}\n{{/items}}' },
      ],
    }),
  );

  it('renders every message with defaults applied', () => {
    expect(version.render({ name: 'Ada', vip: true, items: ['a', 'b'] })).toEqual([
      { role: 'system', content: 'Hello Ada, 3 items (VIP).' },
      { role: 'user', content: '- a\n- b\n' },
    ]);
  });

  it('names a missing required variable', () => {
    const err = catchError(() => version.render({}));
    expect(err).toBeInstanceOf(GatewayError);
    expect(err).toMatchObject({ code: 'missing_variable', status: 400, param: 'prompt_variables.name', message: 'Missing required prompt variable "name"' });
  });

  it('rejects a value of the wrong type', () => {
    expect(catchError(() => version.render({ name: 'Ada', count: '3' }))).toMatchObject({ code: 'invalid_variable', param: 'prompt_variables.count' });
    expect(catchError(() => version.render({ name: 'Ada', items: 'a,b' }))).toMatchObject({ code: 'invalid_variable', param: 'prompt_variables.items' });
    expect(catchError(() => version.render({ name: 'Ada', count: Number.NaN }))).toMatchObject({ code: 'invalid_variable' });
  });

  it('leaves out a message that renders empty or blank', () => {
    expect(version.render({ name: 'Ada' })).toEqual([{ role: 'system', content: 'Hello Ada, 3 items.' }]);
    expect(version.render({ name: 'Ada', items: [] })).toHaveLength(1);
  });

  it('treats null as missing (default or required error)', () => {
    expect(version.render({ name: 'Ada', count: null })[0].content).toBe('Hello Ada, 3 items.');
    expect(catchError(() => version.render({ name: null }))).toMatchObject({ code: 'missing_variable' });
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
