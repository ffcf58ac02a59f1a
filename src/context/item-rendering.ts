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
import { compileText, type TemplateNode } from '../prompts/renderer.js';
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
 * @param lists the names whose value is a list output (the `items` builders in `context.use`)
 * @example
 * splitTemplate(['Answer from:\n{{#knowledge}}[{{source}}] {{text}}\n{{/knowledge}}'], new Set(['knowledge']))
 * // perItem: knowledge => { textTokens: 2 ('[', ']'), tags: [{ path: ['source'] }, { path: ['text'], lead: ' ', trail: '\n' }], sections: [] }
 * // onceTokens: [3] ('Answer from:\n')
 */
export function splitTemplate(messages: readonly string[], lists: ReadonlySet<string>): TemplateShares {
  const perItem = new Map<string, MutableRendering>();
  const onceTokens = messages.map((content) => {
    let once = 0;
    const walk = (nodes: readonly TemplateNode[]): void => {
      for (const node of nodes) {
        if (node.kind === 'text') once += countTokens(node.text);
        else if (node.kind === 'section' && !node.inverted && node.path.length === 1 && lists.has(node.name)) addSection(perItem, node);
        else if (node.kind === 'section') walk(node.children);
      }
    };
    // Parsed again (load time only): a version keeps its parsed messages to itself.
    walk(compileText(content).nodes);
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
  let n = rendering.textTokens;
  for (const tag of rendering.tags) n += tagTokens(tag, lookup(item.value, variables, tag.path));
  // Most templates nest nothing: the stack below is only built for those that do.
  if (rendering.sections.length > 0) {
    const stack: unknown[] = [variables, item.value];
    for (const section of rendering.sections) n += sectionTokens(section, stack);
  }
  return n;
}

/** As the renderer resolves a tag inside the section: the item first, then the variables around it; `{{.}}` is the item. */
function lookup(item: Readonly<Record<string, unknown>>, variables: Readonly<Record<string, unknown>>, path: readonly string[]): unknown {
  if (path.length === 0) return item;
  const value: unknown = Object.hasOwn(item, path[0]) ? item[path[0]] : Object.hasOwn(variables, path[0]) ? variables[path[0]] : undefined;
  return walkDown(value, path);
}

/**
 * Tokens of a nested section as the renderer renders it (renderer.ts `renderNodes`): an
 * inverted one only for a falsy value or empty list; a list once per element, with the
 * element on top of `stack` (`{{.}}`); another truthy value once, on top of `stack`.
 *
 * @param stack the contexts around the section, innermost last (the client's variables, the item, ...); restored on return
 */
function sectionTokens(section: NestedSection, stack: unknown[]): number {
  const value = lookupInStack(stack, section.path);
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
  for (const tag of body.tags) n += tagTokens(tag, lookupInStack(stack, tag.path));
  for (const section of body.sections) n += sectionTokens(section, stack);
  return n;
}

/** Mustache name resolution, as the renderer's: the first segment from the innermost context out, the rest down from it. */
function lookupInStack(stack: readonly unknown[], path: readonly string[]): unknown {
  if (path.length === 0) return stack[stack.length - 1];
  for (let i = stack.length - 1; i >= 0; i--) {
    const context = stack[i];
    if (context !== null && typeof context === 'object' && Object.hasOwn(context, path[0])) {
      return walkDown((context as Record<string, unknown>)[path[0]], path);
    }
  }
  return undefined;
}

/** The value at `path` below its first segment's `value` (own properties only), or undefined. */
function walkDown(value: unknown, path: readonly string[]): unknown {
  for (let i = 1; i < path.length; i++) {
    if (value === null || typeof value !== 'object' || !Object.hasOwn(value, path[i])) return undefined;
    value = (value as Record<string, unknown>)[path[i]];
  }
  return value;
}

/** Mustache falsiness, as the renderer's: false, null, undefined, "", 0, NaN and the empty list. */
function isFalsy(value: unknown): boolean {
  return !value || (Array.isArray(value) && value.length === 0);
}

/** Tokens of a tag's value, with its `lead` and `trail`, as the renderer writes it (remembered: passages come back request after request). */
function tagTokens(tag: ItemTag, value: unknown): number {
  const text = textOf(value);
  return countTokensRemembered(tag.lead === '' && tag.trail === '' ? text : tag.lead + text + tag.trail);
}

/**
 * A value as the renderer writes it: strings as they are, objects as JSON, other values as
 * `String()`. A value nested too deeply for JSON is '': rendering refuses it (400 `invalid_variable`).
 */
function textOf(value: unknown): string {
  if (value === undefined || value === null) return '';
  if (typeof value === 'string') return value;
  if (typeof value !== 'object') return String(value);
  try {
    return JSON.stringify(value);
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
    return '';
  }
}
