/**
 * Compiles the `context:` config section and the templates' `context:` specs, once per
 * config load: builders built (URL templates parsed, rules compiled, knowledge bases
 * chunked and indexed), dependencies ordered, and one `ContextPlan` per template version
 * that has context. Problems are returned as issues with the YAML path, never thrown.
 *
 * A template may name a builder this config does not define: the templates directory is
 * shared content that configs without those builders (tests, minimal overrides) also load.
 * That is a note at load, not an error; the version's requests go out without that
 * context and their reports list it in `skipped`.
 */
import path from 'node:path';
import type { Template, TemplateRegistry, TemplateVersion } from '../prompts/registry.js';
import type { VariableSpec } from '../prompts/variables.js';
import { HistoryBuilder } from './builders/history.js';
import { HttpBuilder } from './builders/http.js';
import { KnowledgeBuilder } from './builders/knowledge.js';
import { RulesBuilder } from './builders/rules.js';
import type { BuilderContext } from './builders/common.js';
import type { BuilderConfig, ContextConfig, RecipeConfig, TemplateContextConfig } from './config-schema.js';
import { keepOnlyKnowledgeBases, loadKnowledgeBase, type KnowledgeBase } from './knowledge-base.js';
import { splitTemplate, type ItemRendering } from './item-rendering.js';
import { preloadContextTokenizer } from './tokens.js';
import type { Builder } from './types.js';
import { variantWidths } from '../experiments/compile.js';

export interface ContextIssue {
  /** Config YAML path, or `@<template file>: ...` for a template. */
  path: string;
  message: string;
}

/** One recipe of a version, resolved. */
export interface CompiledRecipe {
  readonly name: string;
  /** Builder names whose output becomes a variable. */
  readonly use: readonly string[];
  /** `use` plus dependencies, dependencies first. */
  readonly run: readonly Builder[];
  readonly topK?: number;
  readonly maxTurns?: number;
  readonly budgetTokens: number;
  /** Bucket range in experiment mode: [from, to) of 0..9999. */
  readonly from: number;
  readonly to: number;
}

/** What one template version needs from context, resolved against the builders. */
export interface ContextPlan {
  /** `support-context@1.0.0` */
  readonly templateRef: string;
  /** Recipe statistics experiment and assignment salt: `support-context@1.0.0:context`. */
  readonly experiment: string;
  /** The recipes; a version without `recipes:` has one, named `default`. */
  readonly recipes: readonly CompiledRecipe[];
  /** `experiment` or `bandit` (only meaningful with more than one recipe). */
  readonly mode: 'experiment' | 'bandit';
  /** Bandit reward: `success` or `feedback.<name>`. */
  readonly metric: string;
  readonly minExploration: number;
  /** Overall time for the builders of one request (`context.deadline_ms`). */
  readonly deadlineMs: number;
  /** Names in the version's `context.use` that no configured builder has (always skipped). */
  readonly unconfigured: readonly string[];
  /**
   * Every name the version's context fills: `context.use` (configured or not) and the
   * builders they depend on, whichever recipe serves. Never the client's to set, also
   * under a recipe that leaves one of them out.
   */
  readonly names: readonly string[];
  /**
   * The version's declared variables that no builder fills (not in `names`): checked, and
   * their defaults applied, before the builders run (proxy/prompt-step.ts).
   */
  readonly clientVariableSpecs: ReadonlyArray<readonly [string, VariableSpec]>;
  /** `constraints.max_input_tokens` of the version, when set: the budget also keeps the prompt under it. */
  readonly maxInputTokens?: number;
  /**
   * Tokens of the version's messages rendered once: their text outside the sections that
   * iterate a list output, 3 per message (only counted when `maxInputTokens` is set).
   */
  readonly templateTokens: number;
  /**
   * What the version renders per item of each list output it iterates in a section (the
   * section's text and tags): the budget counts items by this (item-rendering.ts).
   */
  readonly perItem: ReadonlyMap<string, ItemRendering>;
}

export interface CompiledContext {
  readonly deadlineMs: number;
  readonly builders: ReadonlyMap<string, Builder>;
  /** By template version ref (`id@version`). */
  readonly plans: ReadonlyMap<string, ContextPlan>;
  /** Knowledge directories, also one that could not be read (the config watcher reloads when they change). */
  readonly watchDirs: readonly string[];
}

/** The default knowledge directory when a knowledge builder names neither `dir` nor `http`. */
export const DEFAULT_KNOWLEDGE_DIR = 'config/knowledge';

/**
 * @param baseDir the config file's directory (relative `dir`s resolve against it)
 */
export function compileContext(
  config: ContextConfig,
  registry: TemplateRegistry,
  baseDir: string,
): { compiled: CompiledContext; issues: ContextIssue[]; notes: string[] } {
  const issues: ContextIssue[] = [];
  const notes: string[] = [];
  const ctx: BuilderContext = { deadlineMs: config.deadline_ms, baseDir, builderNames: new Set(config.builders.map((b) => b.name)) };
  const builders = new Map<string, Builder>();
  const watchDirs: string[] = [];
  // Budgets count tokens in requests: load the BPE tables now (~200 ms once), not in one.
  if (config.builders.length > 0) preloadContextTokenizer();

  config.builders.forEach((cfg, i) => {
    const at = `context.builders[${i}]`;
    if (builders.has(cfg.name)) {
      issues.push({ path: `${at}.name`, message: `duplicate builder name "${cfg.name}"` });
      return;
    }
    const builder = buildOne(cfg, ctx, at, issues, watchDirs);
    if (builder) builders.set(cfg.name, builder);
  });
  checkDependencies(config.builders, builders, issues);
  keepOnlyKnowledgeBases([...builders.values()].flatMap((b) => (b instanceof KnowledgeBuilder && b.kb ? [b.kb] : [])));

  const plans = new Map<string, ContextPlan>();
  for (const template of registry.list()) {
    for (const version of template.versions) {
      const spec = version.context;
      if (!spec) continue;
      const plan = compilePlan(version, spec, { builders, deadlineMs: config.deadline_ms });
      plans.set(version.ref, plan);
      checkRecipeWidths(template, version, plan, issues);
      checkFilledVariables(template, version, builders, issues);
      if (plan.unconfigured.length > 0) {
        const names = plan.unconfigured.map((n) => `"${n}"`).join(', ');
        notes.push(`template ${version.ref} uses context ${names} not defined in context.builders: its requests go out without it`);
      }
    }
  }
  return { compiled: { deadlineMs: config.deadline_ms, builders, plans, watchDirs }, issues, notes };
}

/**
 * A variable the version declares under a builder's name is filled by that builder (a
 * client value for it is dropped): its declared type must be what the builder gives, and
 * it cannot be `required` without a default when the builder is optional and may be
 * skipped. Else every request would get a 400 `invalid_variable` or `missing_variable`
 * blaming the client for the gateway's own value.
 */
function checkFilledVariables(template: Template, version: TemplateVersion, builders: ReadonlyMap<string, Builder>, issues: ContextIssue[]): void {
  for (const name of version.context?.use ?? []) {
    const builder = builders.get(name);
    const declared = version.variables[name];
    if (!builder || !declared) continue;
    const at = `@${template.file}: ${template.locate(version.version, ['variables', name])}`;
    const gives = builder.output === 'items' ? 'array' : 'object';
    if (declared.type !== gives) {
      issues.push({ path: at, message: `"${name}" is filled by the ${builder.kind} builder of that name, whose output is ${gives === 'array' ? 'a list' : 'an object'}: declare it as type ${gives}` });
    } else if (declared.required && declared.default === undefined && !builder.required) {
      issues.push({ path: at, message: `"${name}" is filled by the optional ${builder.kind} builder of that name, which may be skipped: give the variable a default instead of required: true (or make the builder required)` });
    }
  }
}

function buildOne(cfg: BuilderConfig, ctx: BuilderContext, at: string, issues: ContextIssue[], watchDirs: string[]): Builder | undefined {
  try {
    switch (cfg.kind) {
      case 'rules':
        return new RulesBuilder(cfg, ctx);
      case 'history':
        return new HistoryBuilder(cfg, ctx);
      case 'http':
        return new HttpBuilder(cfg, ctx);
      case 'knowledge': {
        const dir = cfg.dir ?? (cfg.http ? undefined : DEFAULT_KNOWLEDGE_DIR);
        let kb: KnowledgeBase | undefined;
        if (dir !== undefined) {
          const abs = path.resolve(ctx.baseDir, dir);
          // Watched also when it cannot be read: a rejected reload waits for the edit that fixes it.
          watchDirs.push(abs);
          try {
            kb = loadKnowledgeBase(abs, { chunkTokens: cfg.chunk_tokens });
          } catch (err) {
            const code = (err as NodeJS.ErrnoException).code ?? 'read error';
            issues.push({ path: `${at}.dir`, message: `cannot read the knowledge directory "${dir}" (${code})` });
            return undefined;
          }
        }
        return new KnowledgeBuilder(cfg, ctx, kb);
      }
    }
  } catch (err) {
    // Placeholder syntax errors from URL/header/body templates.
    issues.push({ path: at, message: err instanceof Error ? err.message : String(err) });
    return undefined;
  }
}

/** In `experiment` mode, each recipe needs at least one bucket (as experiment variants do): one without is never served. */
function checkRecipeWidths(template: Template, version: TemplateVersion, plan: ContextPlan, issues: ContextIssue[]): void {
  if (plan.mode !== 'experiment' || plan.recipes.length < 2) return;
  plan.recipes.forEach((r, i) => {
    if (r.to - r.from >= 1) return;
    const weight = version.context!.recipes![i].weight;
    issues.push({ path: `@${template.file}: ${template.locate(version.version, ['context', 'recipes', i, 'weight'])}`, message: `weight ${weight} gives recipe "${r.name}" no buckets (each needs at least 1/10000 of the total)` });
  });
}

/** Every dependency must exist and the graph must have no cycle. */
function checkDependencies(configs: readonly BuilderConfig[], builders: ReadonlyMap<string, Builder>, issues: ContextIssue[]): void {
  const index = new Map(configs.map((c, i) => [c.name, i]));
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, trail: string[]): void => {
    if (state.get(name) === 'done') return;
    if (state.get(name) === 'visiting') {
      const cycle = [...trail.slice(trail.indexOf(name)), name];
      issues.push({ path: `context.builders[${index.get(name)}]`, message: `builders depend on each other in a cycle: ${cycle.join(' -> ')}` });
      return;
    }
    state.set(name, 'visiting');
    for (const dep of builders.get(name)?.dependsOn ?? []) visit(dep, [...trail, name]);
    state.set(name, 'done');
  };
  for (const name of builders.keys()) visit(name, []);
}

function compilePlan(
  version: TemplateVersion,
  spec: TemplateContextConfig,
  { builders, deadlineMs }: { builders: ReadonlyMap<string, Builder>; deadlineMs: number },
): ContextPlan {
  const ref = version.ref;
  const maxInputTokens = version.constraints.max_input_tokens;
  const unconfigured = spec.use.filter((name) => !builders.has(name));

  const recipeConfigs: readonly RecipeConfig[] = spec.recipes ?? [{ name: 'default', weight: 1 }];
  // Same rule as experiment variants: round(10000 * weight / sum), the last takes the rest.
  const widths = variantWidths(recipeConfigs.map((r) => r.weight));
  let from = 0;
  const recipes = recipeConfigs.map((r, i): CompiledRecipe => {
    const width = widths[i];
    const use = (r.use ?? spec.use).filter((name) => builders.has(name));
    const recipe: CompiledRecipe = {
      name: r.name,
      use,
      run: runOrder(use, builders),
      topK: r.knowledge_top_k,
      maxTurns: r.history_max_turns,
      budgetTokens: r.budget_tokens ?? spec.budget_tokens,
      from,
      to: from + width,
    };
    from = recipe.to;
    return recipe;
  });
  const names = [...new Set([...spec.use, ...runOrder(spec.use, builders).map((b) => b.name)])];
  const lists = new Set(spec.use.filter((name) => builders.get(name)?.output === 'items'));
  const shares = splitTemplate(version.parsedMessages, lists);
  return {
    templateRef: ref,
    experiment: `${ref}:context`,
    recipes,
    mode: spec.recipe_selection.mode,
    metric: spec.recipe_selection.metric,
    minExploration: spec.recipe_selection.min_exploration,
    deadlineMs,
    unconfigured,
    names,
    clientVariableSpecs: version.variableEntries.filter(([name]) => !names.includes(name)),
    maxInputTokens,
    templateTokens: maxInputTokens === undefined ? 0 : shares.onceTokens.reduce((n, tokens) => n + tokens + 3, 0),
    perItem: shares.perItem,
  };
}

/** `use` and everything it depends on, each after its dependencies. */
function runOrder(use: readonly string[], builders: ReadonlyMap<string, Builder>): Builder[] {
  const out: Builder[] = [];
  const seen = new Set<string>();
  const add = (name: string) => {
    if (seen.has(name)) return;
    seen.add(name);
    const b = builders.get(name);
    if (!b) return;
    for (const dep of b.dependsOn) add(dep);
    out.push(b);
  };
  for (const name of use) add(name);
  return out;
}
