/**
 * Adaptive context: which recipe of a template version serves a request.
 * - one recipe: it;
 * - `experiment`: the experiment assignment rule with salt `<template>@<version>:context`
 *   (`bucket = murmur3(salt + ":" + user_id) mod 10000`, recipes take consecutive weighted
 *   ranges); no user id: the first recipe (`default`, left out of the statistics);
 * - `bandit`: Thompson sampling on the recipes' Beta posteriors, `min_exploration` uniform.
 */
import { bucketOf } from '../experiments/hash.js';
import type { CompiledRecipe, ContextPlan } from './compile.js';
import type { ContextRuntime } from './runtime.js';

export interface RecipeChoice {
  readonly recipe: CompiledRecipe;
  readonly assignment: 'hash' | 'bandit' | 'default';
}

export function selectRecipe(plan: ContextPlan, userId: string | undefined, runtime: ContextRuntime): RecipeChoice {
  const recipes = plan.recipes;
  if (recipes.length === 1) return { recipe: recipes[0], assignment: 'default' };
  if (plan.mode === 'bandit') {
    const name = runtime.bandit(plan.experiment, plan.metric).choose(
      recipes.map((r) => r.name),
      plan.minExploration,
    );
    return { recipe: recipes.find((r) => r.name === name)!, assignment: 'bandit' };
  }
  if (userId === undefined || userId === '') return { recipe: recipes[0], assignment: 'default' };
  const bucket = bucketOf(plan.experiment, userId);
  return { recipe: recipes.find((r) => bucket >= r.from && bucket < r.to) ?? recipes[0], assignment: 'hash' };
}
