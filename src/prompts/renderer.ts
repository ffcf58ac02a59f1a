/**
 * Mustache templates compiled once at load and rendered by walking the compiled tree.
 *
 * Syntax is Mustache (parsed by mustache.js, so whitespace and standalone-tag rules follow
 * the spec): `{{name}}`, dotted paths `{{order.id}}`, sections `{{#items}}..{{/items}}`
 * over lists and objects, inverted sections `{{^items}}..{{/items}}`, comments and
 * delimiter changes. Differences from mustache.js, on purpose:
 * - no HTML escaping: `{{x}}` and `{{{x}}}` both insert the value as is (prompts are not HTML);
 * - objects and arrays interpolated directly render as JSON, not `[object Object]`;
 * - only own properties are looked up (`{{constructor}}` renders nothing);
 * - partials (`{{> name}}`) and lambdas are not supported;
 * - a render's output is capped (`MAX_RENDERED_CHARS`; over it: 400 `invalid_variable`).
 */
import Mustache from 'mustache';
import { GatewayError } from '../errors.js';

/** A node of a compiled template; a tree because sections nest. */
export type TemplateNode =
  | { readonly kind: 'text'; readonly text: string }
  | { readonly kind: 'var'; readonly name: string; readonly path: readonly string[] }
  | {
      readonly kind: 'section';
      readonly name: string;
      readonly path: readonly string[];
      readonly inverted: boolean;
      readonly children: readonly TemplateNode[];
    };

/** Template text compiled once; immutable and shared by every request. */
export interface CompiledText {
  readonly source: string;
  readonly nodes: readonly TemplateNode[];
  /** No variables or sections (comments at most): `render` returns the text without walking. */
  readonly isStatic: boolean;
}

/** Thrown by `compileText` for text that is not valid (supported) Mustache. */
export class TemplateSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TemplateSyntaxError';
  }
}

type Token = [string, string, number, number, Token[]?, number?];

const DEFAULT_TAGS: [string, string] = ['{{', '}}'];

/**
 * Parses Mustache text into a render tree. Throws `TemplateSyntaxError` (unclosed section,
 * partial, ...). Load-time only.
 */
export function compileText(source: string): CompiledText {
  let tokens: Token[];
  try {
    // A Writer of our own: mustache's global cache would keep every template ever loaded.
    tokens = new Mustache.Writer().parse(source, DEFAULT_TAGS) as Token[];
  } catch (err) {
    throw new TemplateSyntaxError(err instanceof Error ? err.message : String(err));
  }
  const nodes = Object.freeze(toNodes(tokens));
  const isStatic = nodes.every((n) => n.kind === 'text');
  return Object.freeze({ source, nodes, isStatic });
}

function toNodes(tokens: readonly Token[]): TemplateNode[] {
  const out: TemplateNode[] = [];
  for (const token of tokens) {
    const [type, value] = token;
    switch (type) {
      case 'text': {
        const last = out[out.length - 1];
        // Comments and delimiter changes leave adjacent text tokens: merge them.
        if (last?.kind === 'text') out[out.length - 1] = { kind: 'text', text: last.text + value };
        else out.push({ kind: 'text', text: value });
        break;
      }
      case 'name':
      case '&':
        out.push(Object.freeze({ kind: 'var', name: value, path: splitName(value) }));
        break;
      case '#':
      case '^':
        out.push(
          Object.freeze({
            kind: 'section',
            name: value,
            path: splitName(value),
            inverted: type === '^',
            children: Object.freeze(toNodes(token[4] ?? [])),
          }),
        );
        break;
      case '>':
        throw new TemplateSyntaxError(`partials are not supported ("{{> ${value}}}")`);
      case '!':
      case '=':
        break;
      default:
        throw new TemplateSyntaxError(`unsupported tag type "${type}"`);
    }
  }
  return out;
}

function splitName(name: string): readonly string[] {
  return Object.freeze(name === '.' ? [] : name.split('.'));
}

/**
 * Most characters one render may produce (all messages of a version together), each section
 * repetition counting one more: far beyond any model's context window, far short of what
 * V8 cannot build. A section repeats its text per list item, and sections nested over two
 * lists multiply them, so an 80 KB request could otherwise ask for gigabytes of prompt.
 */
export const MAX_RENDERED_CHARS = 16 * 1024 * 1024;

/** What is left of `MAX_RENDERED_CHARS`; share one between the texts of one render. */
export interface RenderBudget {
  left: number;
}

/**
 * Renders a compiled template against `view` (variables already validated and defaulted).
 * One walk over the tree; no parsing. Throws `invalid_variable` for an object or list
 * value nested too deeply to render as JSON, and when the output would exceed the budget
 * (`MAX_RENDERED_CHARS` unless one is passed).
 */
export function renderText(compiled: CompiledText, view: Readonly<Record<string, unknown>>, budget: RenderBudget = { left: MAX_RENDERED_CHARS }): string {
  // Adjacent text nodes are merged at compile time, so static text is one node (or none).
  if (compiled.isStatic) {
    const text = compiled.nodes.length === 0 ? '' : (compiled.nodes[0] as { text: string }).text;
    spend(budget, text.length);
    return text;
  }
  return renderNodes(compiled.nodes, [view], budget);
}

function renderNodes(nodes: readonly TemplateNode[], stack: unknown[], budget: RenderBudget): string {
  let out = '';
  for (const node of nodes) {
    if (node.kind === 'text') {
      spend(budget, node.text.length);
      out += node.text;
    } else if (node.kind === 'var') {
      const text = stringify(lookup(stack, node.path), node.name);
      spend(budget, text.length);
      out += text;
    } else {
      const value = lookup(stack, node.path);
      if (node.inverted) {
        if (isFalsy(value)) out += renderNodes(node.children, stack, budget);
      } else if (Array.isArray(value)) {
        for (const item of value) {
          spend(budget, 1);
          stack.push(item);
          out += renderNodes(node.children, stack, budget);
          stack.pop();
        }
      } else if (!isFalsy(value)) {
        stack.push(value);
        out += renderNodes(node.children, stack, budget);
        stack.pop();
      }
    }
  }
  return out;
}

function spend(budget: RenderBudget, n: number): void {
  budget.left -= n;
  if (budget.left >= 0) return;
  throw new GatewayError('invalid_variable', `The rendered prompt would be over ${MAX_RENDERED_CHARS} characters: a prompt variable is too large for this template.`, {
    param: 'prompt_variables',
  });
}

/** Mustache falsiness: false, null, undefined, "", 0, NaN and the empty list. */
export function isFalsy(value: unknown): boolean {
  return !value || (Array.isArray(value) && value.length === 0);
}

/**
 * Mustache spec name resolution: the first segment is looked up from the innermost context
 * outwards; later segments walk down from the value found (no further fallback).
 */
export function lookup(stack: readonly unknown[], path: readonly string[]): unknown {
  if (path.length === 0) return stack[stack.length - 1];
  const first = path[0];
  let value: unknown = undefined;
  let found = false;
  for (let i = stack.length - 1; i >= 0; i--) {
    const ctx = stack[i];
    if (ctx !== null && typeof ctx === 'object' && Object.hasOwn(ctx, first)) {
      value = (ctx as Record<string, unknown>)[first];
      found = true;
      break;
    }
  }
  if (!found) return undefined;
  for (let i = 1; i < path.length; i++) {
    if (value === null || typeof value !== 'object' || !Object.hasOwn(value, path[i])) return undefined;
    value = (value as Record<string, unknown>)[path[i]];
  }
  return value;
}

function stringify(value: unknown, name: string): string {
  const text = valueText(value);
  if (text === undefined) throw new GatewayError('invalid_variable', `The prompt variable value rendered by {{${name}}} is nested too deeply.`, { param: 'prompt_variables' });
  return text;
}

/**
 * A tag's value as it renders: strings as they are, objects as JSON, other values as
 * `String()`, nothing for `undefined` and `null`; undefined for a client value nested deeper
 * than JSON.stringify can recurse (it parsed fine).
 */
export function valueText(value: unknown): string | undefined {
  if (value === undefined || value === null) return '';
  if (typeof value === 'string') return value;
  if (typeof value !== 'object') return String(value);
  try {
    return JSON.stringify(value);
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
    return undefined;
  }
}

/** What a compiled template refers to, for load-time validation against declared variables. */
export interface TemplateReferences {
  /** Root names (first path segment) that resolve against the variables. */
  readonly used: ReadonlySet<string>;
  /** Names used where only declared variables can resolve, but not declared. */
  readonly undeclared: readonly string[];
  /** `{{.}}` outside any section (refers to the whole variable set). */
  readonly dotAtTop: boolean;
}

/**
 * Finds the variables a template uses. Outside sections every name must be a declared
 * variable. Inside a section over a list or object the context is the item, so inner names
 * may be item properties and are not required to be declared (they still count as uses when
 * they match a declared name). A section over a string, number or boolean pushes a
 * primitive, so its inner names are checked like top-level ones.
 *
 * @param kinds declared variable name -> type
 */
export function collectReferences(compiled: CompiledText, kinds: ReadonlyMap<string, string>): TemplateReferences {
  const used = new Set<string>();
  const undeclared: string[] = [];
  let dotAtTop = false;
  const walk = (nodes: readonly TemplateNode[], open: boolean, inSection: boolean): void => {
    for (const node of nodes) {
      if (node.kind === 'text') continue;
      const root = node.path[0];
      if (root === undefined) {
        if (!inSection) dotAtTop = true;
      } else if (kinds.has(root)) {
        used.add(root);
      } else if (!open && !undeclared.includes(root)) {
        undeclared.push(root);
      }
      if (node.kind !== 'section') continue;
      if (node.inverted) {
        walk(node.children, open, inSection);
        continue;
      }
      const kind = root === undefined ? undefined : kinds.get(root);
      const pushesPrimitive = node.path.length === 1 && (kind === 'string' || kind === 'number' || kind === 'boolean');
      walk(node.children, open || !pushesPrimitive, true);
    }
  };
  walk(compiled.nodes, false, false);
  return { used, undeclared, dotAtTop };
}
