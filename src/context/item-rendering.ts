/**
 * What a template version renders for each item of a list output (a knowledge passage, a
 * history turn), read once per config load from its parsed messages. A section that
 * iterates a list (`{{#knowledge}}…{{/knowledge}}`) repeats its own text and every tag in
 * it per item, so the budget counts that, not only the item's text: a section that says
 * `Passage from {{source}}, score {{score}}, titled "{{title}}":` around each passage took
 * a third more than the budget it was trimmed to.
 *
 * Per request only the tags' values are counted (remembered counts, no rendering); a section
 * nested in a list section (`{{#tags}}{{.}}, {{/tags}}`) is counted per item the way the
 * renderer renders it: per element of a list, once for another truthy value, not at all for
 * a falsy one (inverted: the other way round).
 */
import { isFalsy, lookup, valueText, type CompiledText, type TemplateNode } from '../prompts/renderer.js';
import { countTokens, countTokensRemembered } from './tokens.js';
import type { BuilderOutput, ContextItem } from './types.js';

/**
 * A tag inside a section, with the whitespace around it that is counted with its value:
 * o200k_base joins a space to the word after it (`source refunds` is `source`, ` refunds`)
 * and line breaks to the punctuation before them (`days.\n`), so counted apart from the
 * value they came out a token or two over what was rendered, per tag and item.
 */
export interface ItemTag {
  /** Looked up in the item, then in the client's variables; `[]` is `{{.}}`, the item. */
  readonly path: readonly string[];
  /** The space the text before the tag ends with, or ''. */
  readonly lead: string;
  /** The line breaks the text after the tag starts with, or ''. */
  readonly trail: string;
}

/**
 * What the sections over one list variable render per item, summed over those sections.
 * `textTokens` and `tags` render once per item; `sections` are the sections nested in them,
 * whose count depends on each item's values (`{{#tags}}{{.}}, {{/tags}}`).
 */
export interface ItemRendering {
  /** Tokens of the sections' own text outside nested sections, less what the tags take. */
  readonly textTokens: number;
  /** The tags inside the sections (not inside nested sections), one entry per occurrence. */
  readonly tags: readonly ItemTag[];
  /** Sections nested inside, counted per item as the renderer renders them. Empty for most templates. */
  readonly sections: readonly NestedSection[];
}

/** A section inside a list section (`{{#meta}}{{author}}{{/meta}}`, `{{^tags}}untagged{{/tags}}`). */
export interface NestedSection {
  /** Looked up like a tag: in the enclosing sections' values, then the item, then the client's variables. */
  readonly path: readonly string[];
  readonly inverted: boolean;
  /** What it renders each time it renders: once per element of a list, once for another truthy value. */
  readonly body: ItemRendering;
}

/** A version's messages split into what renders once and what renders per item. */
export interface TemplateShares {
  /** By list variable name: what is rendered per item. Only lists some section iterates. */
  readonly perItem: ReadonlyMap<string, ItemRendering>;
  /** Tokens of each message's text outside those sections (rendered once, whatever the context). */
  readonly onceTokens: readonly number[];
}

/**
 * Splits the messages' parsed templates: text inside a (non-inverted) section named exactly
 * like a list variable goes to that list, once per section (a list rendered by two
 * sections, in one message or two, counts both); the rest is rendered once.
 *
 * @param messages the version's messages as parsed at load (`TemplateVersion.parsedMessages`)
 * @param lists the names whose value is a list output (the `items` builders in `context.use`)
 * @example
 * splitTemplate([compileText('Answer from:\n{{#knowledge}}[{{source}}] {{text}}\n{{/knowledge}}')], new Set(['knowledge']))
 * // perItem: knowledge => { textTokens: 2 ('[', ']'), tags: [{ path: ['source'] }, { path: ['text'], lead: ' ', trail: '\n' }], sections: [] }
 * // onceTokens: [3] ('Answer from:\n')
 */
export function splitTemplate(messages: readonly CompiledText[], lists: ReadonlySet<string>): TemplateShares {
  const perItem = new Map<string, MutableRendering>();
  const onceTokens = messages.map((parsed) => {
    let once = 0;
    const walk = (nodes: readonly TemplateNode[]): void => {
      for (const node of nodes) {
        if (node.kind === 'text') once += countTokens(node.text);
        else if (node.kind === 'section' && !node.inverted && node.path.length === 1 && lists.has(node.name)) addSection(perItem, node);
        else if (node.kind === 'section') walk(node.children);
      }
    };
    walk(parsed.nodes);
    return once;
  });
  return { perItem, onceTokens };
}

type MutableRendering = { textTokens: number; tags: ItemTag[]; sections: NestedSection[] };

function addSection(perItem: Map<string, MutableRendering>, section: Extract<TemplateNode, { kind: 'section' }>): void {
  let rendering = perItem.get(section.name);
  if (!rendering) perItem.set(section.name, (rendering = { textTokens: 0, tags: [], sections: [] }));
  const body = renderingOf(section.children, true);
  rendering.textTokens += body.textTokens;
  rendering.tags.push(...body.tags);
  rendering.sections.push(...body.sections);
}

/**
 * Splits a section's children into text, tags and nested sections (each split the same way).
 * A tag takes the whitespace of the text right next to it; a nested section in between is a
 * boundary, as its text may render any number of times. In a body rendered once per element
 * that starts with a tag and ends with a space (`{{#tags}}{{.}}, {{/tags}}`), that space is
 * the next element's lead (`refund, shipping` is `refund`, `,`, ` shipping`), and the first
 * element's lead is the space before the section (`tags: {{#tags}}`).
 */
function renderingOf(nodes: readonly TemplateNode[], repeats: boolean): MutableRendering {
  const rendering: MutableRendering = { textTokens: 0, tags: [], sections: [] };
  const texts = nodes.map((node) => (node.kind === 'text' ? node.text : ''));
  const seam = repeats && hasSeam(nodes);
  if (seam) texts[texts.length - 1] = texts[texts.length - 1].slice(0, -1);
  nodes.forEach((node, i) => {
    if (node.kind === 'text') return;
    const before = texts[i - 1] ?? '';
    if (node.kind === 'section') {
      const nestedSeam = !node.inverted && hasSeam(node.children);
      if (nestedSeam && before.endsWith(' ')) texts[i - 1] = before.slice(0, -1);
      rendering.sections.push({ path: node.path, inverted: node.inverted, body: renderingOf(node.children, !node.inverted) });
      return;
    }
    const lead = before.endsWith(' ') || (i === 0 && seam) ? ' ' : '';
    if (before.endsWith(' ')) texts[i - 1] = before.slice(0, -1);
    const trail = /^[\r\n]*/.exec(texts[i + 1] ?? '')![0];
    if (trail) texts[i + 1] = texts[i + 1].slice(trail.length);
    rendering.tags.push({ path: node.path, lead, trail });
  });
  for (const text of texts) rendering.textTokens += countTokens(text);
  return rendering;
}

/** A body that starts with a tag and ends with text ending in a space: repeated, the space joins the next tag. */
function hasSeam(nodes: readonly TemplateNode[]): boolean {
  const last = nodes.at(-1);
  return nodes.length > 1 && nodes[0].kind === 'var' && last?.kind === 'text' && last.text.endsWith(' ');
}

/**
 * The output with each item's `tokens` replaced by what the template renders for it (the
 * output as is when no section iterates it: its builder's own count stands). One per
 * request; the cached output it was made from is not changed.
 *
 * @param variables the client's variables (a tag inside the section may name one: it is repeated per item too)
 */
export function countAsRendered(output: BuilderOutput, rendering: ItemRendering | undefined, variables: Readonly<Record<string, unknown>>): BuilderOutput {
  if (output.shape !== 'items' || rendering === undefined) return output;
  const items = output.items.map((item): ContextItem => ({ ...item, tokens: renderedTokens(item, rendering, variables) }));
  return { ...output, items };
}

function renderedTokens(item: ContextItem, rendering: ItemRendering, variables: Readonly<Record<string, unknown>>): number {
  // The contexts a tag inside the section resolves in, as the renderer's: the item, then the variables.
  return bodyTokens(rendering, [variables, item.value]);
}

/**
 * Tokens of a nested section as the renderer renders it (renderer.ts `renderNodes`): an
 * inverted one only for a falsy value or empty list; a list once per element, with the
 * element on top of `stack` (`{{.}}`); another truthy value once, on top of `stack`.
 *
 * @param stack the contexts around the section, innermost last (the client's variables, the item, ...); restored on return
 */
function sectionTokens(section: NestedSection, stack: unknown[]): number {
  const value = lookup(stack, section.path);
  if (section.inverted) return isFalsy(value) ? bodyTokens(section.body, stack) : 0;
  if (isFalsy(value)) return 0;
  let n = 0;
  for (const top of Array.isArray(value) ? value : [value]) {
    stack.push(top);
    n += bodyTokens(section.body, stack);
    stack.pop();
  }
  return n;
}

/** Tokens of one rendering of a nested section's body, `stack` being the contexts it renders in. */
function bodyTokens(body: ItemRendering, stack: unknown[]): number {
  let n = body.textTokens;
  for (const tag of body.tags) n += tagTokens(tag, lookup(stack, tag.path));
  for (const section of body.sections) n += sectionTokens(section, stack);
  return n;
}

/** Tokens of a tag's value, with its `lead` and `trail`, as the renderer writes it (remembered: passages come back request after request). */
function tagTokens(tag: ItemTag, value: unknown): number {
  // A value nested too deeply for JSON counts nothing: rendering refuses it (400 `invalid_variable`).
  const text = valueText(value) ?? '';
  return countTokensRemembered(tag.lead === '' && tag.trail === '' ? text : tag.lead + text + tag.trail);
}
