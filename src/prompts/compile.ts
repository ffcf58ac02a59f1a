/**
 * Glue between the config file and the prompt registry / experiments: loads the templates
 * directory and compiles experiments and bindings against it, once per config load.
 * Issue paths: `@<template file>: yaml.path (line N)` for a template file (the `@` tells the
 * config loader not to prefix the config file name), a bare YAML path inside the config
 * file otherwise.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { ConfigFile } from '../config/schema.js';
import { compileExperiments, type CompiledExperiment } from '../experiments/compile.js';
import { compileBindings, type CompiledBinding } from './bindings.js';
import { compileIdentity, type UserIdOf } from './identity.js';
import { loadTemplateRegistry } from './loader.js';
import type { TemplateRegistry } from './registry.js';
import type { ConfigIssue } from './types.js';

export interface CompiledPrompts {
  readonly templatesDir: string;
  readonly registry: TemplateRegistry;
  readonly experiments: ReadonlyMap<string, CompiledExperiment>;
  /** By model alias. */
  readonly bindings: ReadonlyMap<string, CompiledBinding>;
  /** `identity.user_id_from`, compiled. */
  readonly userIdOf: UserIdOf;
}

export type PromptIssue = ConfigIssue;

/**
 * @param templatesDir absolute directory (the config's `templates.dir` resolved against the
 * config file); issue paths show `templates.dir` as written.
 */
export function compilePrompts(file: ConfigFile, templatesDir: string): { compiled: CompiledPrompts; issues: PromptIssue[] } {
  const loaded = loadTemplateRegistry(templatesDir, { displayDir: path.normalize(file.templates.dir) });
  // A config that uses no templates may point at a directory that does not exist.
  const usesTemplates = file.bindings.length > 0 || file.experiments.length > 0 || existsSync(templatesDir);
  const issues: PromptIssue[] = usesTemplates ? loaded.issues.map((i) => ({ ...i, path: `@${i.path}` })) : [];
  const { experiments, issues: experimentIssues } = compileExperiments(file.experiments, loaded.registry);
  const { bindings, issues: bindingIssues } = compileBindings(file.bindings, {
    registry: loaded.registry,
    experiments,
    configuredExperiments: new Set(file.experiments.map((e) => e.id)),
  });
  issues.push(...experimentIssues, ...bindingIssues);
  const userIdOf = compileIdentity(file.identity.user_id_from);
  return { compiled: { templatesDir, registry: loaded.registry, experiments, bindings, userIdOf }, issues };
}
