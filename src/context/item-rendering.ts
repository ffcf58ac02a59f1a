/**
 * What a template version renders for each item of a list output (a knowledge passage, a
 * history turn), read once per config load from its parsed messages. A section that
 * iterates a list (`{{#knowledge}}…{{/knowledge}}`) repeats its own text and every tag in
 * it per item, so the budget counts that, not only the item's text: a section that says
 * `Passage from {{source}}, score {{score}}, titled "{{title}}":` around each passage took
 * a third more than the budget it was trimmed to.
 *
 * Per request only the tags' values are counted (remembered counts, no rendering).
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

/** What the sections over one list variable render per item, summed over those sections. */
export interface ItemRendering {
  /** Tokens of the sections' own text (nested sections' text included), less what the tags take. */
  readonly textTokens: number;
  /** The tags inside the sections, one entry per occurrence. */
  readonly tags: readonly ItemTag[];
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
 * // perItem: knowledge => { textTokens: 2 ('[', ']'), tags: [{ path: ['source'] }, { path: ['text'], lead: ' ', trail: '\n' }] }
 * // onceTokens: [3] ('Answer from:\n')
 */
export function splitTemplate(messages: readonly string[], lists: ReadonlySet<string>): TemplateShares {
  const perItem = new Map<string, { textTokens: number; tags: ItemTag[] }>();
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

function addSection(perItem: Map<string, { textTokens: number; tags: ItemTag[] }>, section: Extract<TemplateNode, { kind: 'section' }>): void {
  let rendering = perItem.get(section.name);
  if (!rendering) perItem.set(section.name, (rendering = { textTokens: 0, tags: [] }));
  // A nested section is counted as rendered once per item, inline (its text and tags in order).
  const flat: Array<Exclude<TemplateNode, { kind: 'section' }>> = [];
  const flatten = (nodes: readonly TemplateNode[]): void => {
    for (const node of nodes) {
      if (node.kind === 'section') flatten(node.children);
      else flat.push(node);
    }
  };
  flatten(section.children);
  const texts = flat.map((node) => (node.kind === 'text' ? node.text : ''));
  flat.forEach((node, i) => {
    if (node.kind !== 'var') return;
    const before = texts[i - 1] ?? '';
    const lead = before.endsWith(' ') ? ' ' : '';
    if (lead) texts[i - 1] = before.slice(0, -1);
    const trail = /^[\r\n]*/.exec(texts[i + 1] ?? '')![0];
    if (trail) texts[i + 1] = texts[i + 1].slice(trail.length);
    rendering.tags.push({ path: node.path, lead, trail });
  });
  for (const text of texts) rendering.textTokens += countTokens(text);
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
  return n;
}

/** As the renderer resolves a tag inside the section: the item first, then the variables around it; `{{.}}` is the item. */
function lookup(item: Readonly<Record<string, unknown>>, variables: Readonly<Record<string, unknown>>, path: readonly string[]): unknown {
  if (path.length === 0) return item;
  let value: unknown = Object.hasOwn(item, path[0]) ? item[path[0]] : Object.hasOwn(variables, path[0]) ? variables[path[0]] : undefined;
  for (let i = 1; i < path.length; i++) {
    if (value === null || typeof value !== 'object' || !Object.hasOwn(value, path[i])) return undefined;
    value = (value as Record<string, unknown>)[path[i]];
  }
  return value;
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
