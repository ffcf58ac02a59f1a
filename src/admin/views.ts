/**
 * JSON shapes of the admin API (snake_case, like the config). Kept apart from the routes so
 * the payloads are easy to read and to keep stable.
 */
import { currentStage, isActive, type RolloutStage } from '../experiments/assignment.js';
import type { CompiledExperiment } from '../experiments/compile.js';
import type { AssignmentCounters } from '../experiments/counters.js';
import type { Template, TemplateVersion } from '../prompts/registry.js';

export function templateSummary(t: Template) {
  return {
    id: t.id,
    name: t.name,
    description: t.description,
    tags: t.tags,
    default_version: t.defaultVersion.version,
    labels: t.labels,
    versions: t.versions.map((v) => v.version),
  };
}

export function templateDetail(t: Template) {
  return { ...templateSummary(t), metadata: t.metadata, file: t.file, versions: t.versions.map(versionDetail) };
}

function versionDetail(v: TemplateVersion) {
  return {
    version: v.version,
    labels: v.labels,
    role: v.role,
    model: v.model ?? null,
    params: v.params,
    constraints: v.constraints,
    variables: v.variables,
    messages: v.messages,
  };
}

function stageView(stage: RolloutStage | null) {
  if (!stage) return null;
  return {
    index: stage.index,
    percent: stage.percent,
    started_at: stage.startedAt.toISOString(),
    next_at: stage.nextAt?.toISOString() ?? null,
  };
}

export function experimentSummary(e: CompiledExperiment, now: Date) {
  return {
    id: e.id,
    template: e.templateId,
    active: isActive(e, now),
    variants: e.variants.map((v) => ({ name: v.name, version: v.version, weight: v.weight, buckets: [v.from, v.to] as const })),
    rollout_stage: stageView(currentStage(e, now)),
  };
}

export function experimentDetail(e: CompiledExperiment, counters: AssignmentCounters, now: Date) {
  const names = e.variants.map((v) => v.name);
  return {
    ...experimentSummary(e, now),
    salt: e.salt,
    baseline: e.baseline.name,
    metrics: e.metrics,
    schedule: {
      start: e.startMs === undefined ? null : new Date(e.startMs).toISOString(),
      end: e.endMs === undefined ? null : new Date(e.endMs).toISOString(),
    },
    rollout: e.rollout ? { stages: e.rollout.stages, every: e.rollout.every } : null,
    counts: { variants: counters.snapshot(e.id, names), totals: counters.totals(e.id) },
  };
}
