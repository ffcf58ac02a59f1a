/**
 * Turns one parsed template file into a `Template`, or into problems located by YAML path:
 * schema errors, non-semver or duplicate versions, a label on two versions, variables used
 * but not declared (or declared required but unused), defaults of the wrong type, params
 * setting both `max_tokens` and `max_completion_tokens`, invalid Mustache, and injection-like
 * text. Load-time only.
 */
import semver from 'semver';
import type { z } from 'zod';
import { suggestKey } from '../config/suggest.js';
import { looksLikeInjection } from './injection-check.js';
import { makeTemplate, TemplateVersion, type Template } from './registry.js';
import { collectReferences, compileText, TemplateSyntaxError, type CompiledText } from './renderer.js';
import { templateFileSchema, type TemplateFile } from './template-schema.js';
import { formatYamlPath } from './types.js';
import { describeType, hasType } from './variables.js';

/** A problem inside one template file; `segments` is the YAML path to the offending node. */
export interface TemplateProblem {
  segments: PropertyKey[];
  message: string;
}

export interface CompileTemplateOptions {
  /** The id the file name implies; a different `id:` is a problem. */
  expectedId?: string;
  /** Shown as `Template.file`. */
  file?: string;
  /** `Template.locate`: where `versions[index]...segments` is in the file. */
  locate?: (versionIndex: number, segments: readonly PropertyKey[]) => string;
}

/**
 * Validates and compiles parsed template data (the YAML document as JS).
 *
 * @example
 * const { template, problems } = compileTemplate(YAML.parse(text), { expectedId: 'support-reply' });
 */
export function compileTemplate(data: unknown, options: CompileTemplateOptions = {}): { template?: Template; problems: TemplateProblem[] } {
  const parsed = templateFileSchema.safeParse(data);
  if (!parsed.success) return { problems: parsed.error.issues.flatMap((issue) => schemaProblems(issue, data)) };
  const file = parsed.data;
  const problems: TemplateProblem[] = [];

  if (options.expectedId !== undefined && file.id !== options.expectedId) {
    problems.push({ segments: ['id'], message: `"${file.id}" does not match the file name (expected "${options.expectedId}")` });
  }
  checkVersionsAndLabels(file, problems);
  const versions = file.versions.map((v, i) => compileVersion(file.id, v, i, problems));
  if (problems.length > 0) return { problems };

  return {
    template: makeTemplate({
      id: file.id,
      name: file.name,
      description: file.description,
      tags: file.tags,
      metadata: file.metadata,
      file: options.file,
      versions: versions as TemplateVersion[],
      locate: options.locate ? (version, segments) => options.locate!(file.versions.findIndex((v) => v.version === version), segments) : undefined,
    }),
    problems,
  };
}

function checkVersionsAndLabels(file: TemplateFile, problems: TemplateProblem[]): void {
  const versionAt = new Map<string, number>();
  const labelAt = new Map<string, number>();
  file.versions.forEach((v, i) => {
    if (semver.valid(v.version) !== v.version) {
      problems.push({ segments: ['versions', i, 'version'], message: `"${v.version}" is not semver (expected MAJOR.MINOR.PATCH, e.g. "1.0.0")` });
    } else if (versionAt.has(v.version)) {
      problems.push({ segments: ['versions', i, 'version'], message: `duplicate version "${v.version}" (also versions[${versionAt.get(v.version)}])` });
    } else {
      versionAt.set(v.version, i);
    }
    v.labels.forEach((label, j) => {
      const at: PropertyKey[] = ['versions', i, 'labels', j];
      if (semver.valid(label) !== null) {
        problems.push({ segments: at, message: `label "${label}" reads as a version; labels must not be semver` });
        return;
      }
      const other = labelAt.get(label);
      if (other === i) {
        problems.push({ segments: at, message: `label "${label}" is listed twice` });
      } else if (other !== undefined) {
        problems.push({
          segments: at,
          message: `label "${label}" is already on version ${file.versions[other].version} (versions[${other}]); a label names one version`,
        });
      } else {
        labelAt.set(label, i);
      }
    });
  });
}

function compileVersion(id: string, v: TemplateFile['versions'][number], i: number, problems: TemplateProblem[]): TemplateVersion | undefined {
  const before = problems.length;
  const kinds = new Map(Object.entries(v.variables).map(([name, spec]) => [name, spec.type]));
  // Context builder outputs are variables too (objects or lists, so sections over them are open).
  for (const name of v.context?.use ?? []) if (!kinds.has(name)) kinds.set(name, 'object');

  for (const [name, spec] of Object.entries(v.variables)) {
    if (spec.default === undefined) continue;
    const at: PropertyKey[] = ['versions', i, 'variables', name, 'default'];
    if (!hasType(spec.default, spec.type)) {
      problems.push({ segments: at, message: `expected ${describeType(spec.type)} (the declared type), got ${typeName(spec.default)}` });
    } else {
      // Strings anywhere in the default (inside lists and objects too) are rendered text.
      for (const [where, text] of stringsIn(spec.default, at)) {
        const hit = looksLikeInjection(text);
        if (hit) problems.push({ segments: where, message: `text looks like a prompt injection ("${hit}")` });
      }
    }
  }

  // Both filled into one request when the client sets neither: OpenAI rejects that request.
  const limits = OUTPUT_LIMITS.flatMap((f): PropertyKey[][] => [
    ...(v.params[f] !== undefined ? [['params', f]] : []),
    ...(v.params.extra_body !== undefined && Object.hasOwn(v.params.extra_body, f) ? [['params', 'extra_body', f]] : []),
  ]);
  if (new Set(limits.map((at) => at[at.length - 1])).size > 1) {
    problems.push({
      segments: ['versions', i, ...limits[limits.length - 1]],
      message: `set max_tokens or max_completion_tokens, not both (also ${formatYamlPath(limits[0])}): they are one limit, and OpenAI rejects a request with both`,
    });
  }

  const used = new Set<string>();
  const compiled: CompiledText[] = [];
  v.messages.forEach((m, j) => {
    const at: PropertyKey[] = ['versions', i, 'messages', j, 'content'];
    const hit = looksLikeInjection(m.content);
    if (hit) problems.push({ segments: at, message: `text looks like a prompt injection ("${hit}")` });
    let text: CompiledText;
    try {
      text = compileText(m.content);
    } catch (err) {
      if (!(err instanceof TemplateSyntaxError)) throw err;
      problems.push({ segments: at, message: `invalid Mustache: ${err.message}` });
      return;
    }
    compiled.push(text);
    const refs = collectReferences(text, kinds);
    for (const name of refs.used) used.add(name);
    for (const name of refs.undeclared) {
      problems.push({
        segments: at,
        message: `uses undeclared variable "${name}" (declare it under ${formatYamlPath(['versions', i, 'variables'])})`,
      });
    }
    if (refs.dotAtTop) problems.push({ segments: at, message: '"{{.}}" is only meaningful inside a section' });
  });

  for (const [name, spec] of Object.entries(v.variables)) {
    if (spec.required && !used.has(name)) {
      problems.push({ segments: ['versions', i, 'variables', name], message: `required variable "${name}" is not used by any message` });
    }
  }
  if (problems.length > before) return undefined;
  return new TemplateVersion(id, v, compiled);
}

/** The output-token limit, under its old and its new name. */
const OUTPUT_LIMITS = ['max_tokens', 'max_completion_tokens'] as const;

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

/** zod issues -> problems; an unknown key points at the key itself, with the key it is close to. */
function schemaProblems(issue: z.core.$ZodIssue, data: unknown): TemplateProblem[] {
  const segments = issue.path as PropertyKey[];
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => {
      const meant = suggestKey(templateFileSchema, data, segments, key);
      return { segments: [...segments, key], message: `unknown key "${key}"${meant === undefined ? '' : `; did you mean ${meant}?`}` };
    });
  }
  let message = issue.message.replace(/^Invalid input: /, '');
  if (issue.code === 'invalid_type' && message.includes('received undefined')) message = `required (${message})`;
  return [{ segments, message }];
}

/** Every string in a (YAML-parsed) value with its path, depth first. */
function* stringsIn(value: unknown, at: PropertyKey[]): Generator<[PropertyKey[], string]> {
  if (typeof value === 'string') yield [at, value];
  else if (Array.isArray(value)) for (let i = 0; i < value.length; i++) yield* stringsIn(value[i], [...at, i]);
  else if (value !== null && typeof value === 'object') for (const [k, v] of Object.entries(value)) yield* stringsIn(v, [...at, k]);
}
