/**
 * Shared shapes of context injection. Builders (`builders/*.ts`), the cache, the budget and
 * the orchestrator (`build.ts`) meet here; this file imports only types.
 */
import type { Dispatcher } from 'undici';
import type { CacheConfig } from './config-schema.js';

export type BuilderKind = 'rules' | 'history' | 'http' | 'knowledge';

/** One element of a list output (a knowledge passage, a history turn). */
export interface ContextItem {
  /** What the template sees (`{{#knowledge}}{{title}}{{/knowledge}}`). */
  readonly value: Readonly<Record<string, unknown>>;
  /**
   * Tokens of the item's text (o200k_base), as its builder counts it. The budget counts what
   * the template renders for the item instead, when a section lists it (item-rendering.ts).
   */
  readonly tokens: number;
  /** Ordering score (knowledge); higher is kept longer by the budget. */
  readonly score?: number;
  /** Text scanned for indirect injection when the builder's output is untrusted. */
  readonly text?: string;
}

/**
 * A builder's result. `items` outputs are lists the budget trims item by item; `object`
 * outputs are kept or dropped whole.
 */
export type BuilderOutput =
  | { readonly shape: 'items'; readonly items: readonly ContextItem[]; readonly trimFrom: 'start' | 'end' }
  | { readonly shape: 'object'; readonly value: Readonly<Record<string, unknown>>; readonly tokens: number };

/** What a builder gets for one request. One per request, not shared. */
export interface BuildInput {
  /** The request's `messages` as sent by the client. */
  readonly messages: readonly unknown[];
  readonly userId: string | undefined;
  /**
   * Lookup scope for templates and rules: the client's template variables, `user_id`, and
   * the outputs of the builders this one depends on (by builder name).
   */
  readonly scope: Readonly<Record<string, unknown>>;
  /** Text of the last user message (the knowledge query). */
  readonly query: string;
  /** Recipe overrides. */
  readonly topK?: number;
  readonly maxTurns?: number;
  /**
   * Whether the guard's `user` scan reads the request's user messages (`guard.injection`
   * acts and its `scan` lists `user`): the history builder leaves their text to it.
   */
  readonly userScanned?: boolean;
  /** For http calls (the runtime's Agent); undici's global dispatcher when absent. */
  readonly dispatcher?: Dispatcher;
}

/**
 * How a builder will serve one request: skip for want of input, compute in place (no I/O,
 * so the request does not wait for it), or produce (cached under `key` when the builder
 * has a cache and `key` is set).
 */
export type BuildPlan =
  | { readonly missing: string }
  | { readonly compute: () => BuilderOutput }
  | { readonly key?: string; readonly produce: (signal: AbortSignal) => Promise<BuilderOutput> };

/**
 * A compiled builder: config parsed once per load (URL templates, rules, the knowledge
 * index). Stateless per request; its cache lives in the `ContextRuntime` so it outlives
 * config reloads.
 */
export interface Builder {
  readonly name: string;
  readonly kind: BuilderKind;
  readonly required: boolean;
  readonly timeoutMs: number;
  readonly priority: number;
  readonly cache?: Readonly<CacheConfig>;
  /** Fetched or retrieved text: scanned for injection when `guard.injection.scan` has `context`. */
  readonly untrusted: boolean;
  /** The shape of its output: an object (rules, http) or a list of items (knowledge, history). */
  readonly output: BuilderOutput['shape'];
  /** Builders whose outputs this one reads (rules conditions, URL placeholders). */
  readonly dependsOn: readonly string[];
  /** Equal fingerprints mean the runtime may keep this builder's cache across a reload. */
  readonly fingerprint: string;
  plan(input: BuildInput): BuildPlan;
}

/** Status of one builder in one request. */
export type BuilderStatus = 'ok' | 'cached' | 'stale' | 'skipped' | 'failed';

/** Cache outcome of one lookup. */
export type CacheResult = 'hit' | 'miss' | 'stale';

/** Per-builder line of the report (span attributes, logs). */
export interface BuilderReport {
  readonly name: string;
  readonly kind: BuilderKind;
  status: BuilderStatus;
  /** Why skipped/failed: `timeout`, `deadline`, `missing_input`, `http_5xx`, `invalid_response`, `error`... */
  reason?: string;
  ms: number;
  cache?: CacheResult;
  items: number;
  /** Tokens injected after the budget. */
  tokens: number;
  /** Items (or the whole object: 1) removed to fit the budget. */
  trimmed: number;
  /** Passages (or fields) flagged by the injection scanner, and dropped among them. */
  flagged: number;
  blocked: number;
}

/** What `buildContext` tells the pipeline besides the variables. */
export interface ContextReport {
  builders: BuilderReport[];
  /** The recipe served, when the version has recipes. */
  recipe?: string;
  /** How the recipe was chosen: `hash` (user id), `bandit`, or `default` (no user id: the first recipe). */
  recipeAssignment?: 'hash' | 'bandit' | 'default';
  /** Experiment name of the recipe statistics: `<template>@<version>:context`. */
  recipeExperiment?: string;
  /** Tokens of injected context, after the budget. */
  tokens: number;
  budget: number;
  /** Items removed by the budget, all builders. */
  dropped: number;
  /** Builders that contributed nothing (skipped or failed). */
  skipped: string[];
  /** Highest injection score among scanned context, when any was scanned. */
  injectionScore?: number;
  injectionFlagged: number;
  injectionBlocked: number;
  ms: number;
}
