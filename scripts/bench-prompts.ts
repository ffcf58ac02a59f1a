/**
 * Micro-benchmark of the per-request prompt work: assignment, selection, variable
 * collection, rendering and body rewrite. Run: `npx tsx scripts/bench-prompts.ts [iterations]`.
 *
 * Uses the shipped `config/templates` and the `support-tone` experiment from DESIGN.md.
 * Each case runs a warm-up, then `iterations` operations over 10,000 distinct user ids, and
 * prints the median ns/op of 5 runs.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { assign } from '../src/experiments/assignment.js';
import { compileExperiments } from '../src/experiments/compile.js';
import { bucketOf } from '../src/experiments/hash.js';
import { compileBindings } from '../src/prompts/bindings.js';
import { experimentSchema } from '../src/experiments/config-schema.js';
import { bindingSchema } from '../src/prompts/config-schema.js';
import { loadTemplateRegistry } from '../src/prompts/loader.js';
import { applySelection, collectVariables, selectTemplate } from '../src/prompts/selection.js';

const iterations = Number(process.argv[2] ?? 200_000);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const { registry, issues } = loadTemplateRegistry(path.join(root, 'config/templates'));
if (issues.length > 0) throw new Error(JSON.stringify(issues));
const { experiments } = compileExperiments(
  [
    experimentSchema.parse({
      id: 'support-tone',
      template: 'support-reply',
      variants: [{ name: 'control', version: '1.0.0', weight: 50 }, { name: 'warm', version: '1.1.0', weight: 50 }],
      start: '2020-01-01T00:00:00Z',
    }),
  ],
  registry,
);
const { bindings } = compileBindings([bindingSchema.parse({ model: 'support-bot', experiment: 'support-tone' })], { registry, experiments });
const exp = experiments.get('support-tone')!;

const users = Array.from({ length: 10_000 }, (_, i) => `user-${i}@example.com`);
const now = new Date();
const headers: Record<string, string> = { 'x-promptgate-var-customer_name': 'Ada', 'x-user-id': 'user-1' };
const header = (name: string) => headers[name];
const body = {
  model: 'support-bot',
  messages: [
    { role: 'system', content: 'client system prompt' },
    { role: 'user', content: 'My order #1234 has not arrived. Can you help?' },
  ],
  prompt_variables: { product: 'Widget Pro' },
  stream: true,
};
const selectionInput = (userId: string) => ({ body, header, registry, bindings, userId, now });

let sink = 0;
// Each case owns its loop so every call site stays monomorphic (a shared `fn(i)` loop
// would measure V8's megamorphic dispatch, not the code).
const cases: Record<string, (n: number) => void> = {
  'bucket (murmur3 + mod)': (n) => {
    for (let i = 0; i < n; i++) sink += bucketOf('support-tone', users[i % users.length]);
  },
  'assign (bucket + schedule + range)': (n) => {
    for (let i = 0; i < n; i++) sink += assign(exp, users[i % users.length], now).variant.to;
  },
  'selectTemplate (binding -> experiment)': (n) => {
    for (let i = 0; i < n; i++) sink += selectTemplate(selectionInput(users[i % users.length]))!.version.length;
  },
  'full: select + collectVariables + applySelection': (n) => {
    for (let i = 0; i < n; i++) {
      const sel = selectTemplate(selectionInput(users[i % users.length]))!;
      sink += (applySelection(body, sel, collectVariables(body, header, sel)).messages as unknown[]).length;
    }
  },
};
const results: Record<string, number> = {};
for (const [name, run] of Object.entries(cases)) {
  run(20_000);
  const runs: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t0 = process.hrtime.bigint();
    run(iterations);
    runs.push(Number(process.hrtime.bigint() - t0) / iterations);
  }
  runs.sort((a, b) => a - b);
  results[name] = runs[2];
}

console.log(`promptgate prompt micro-benchmark (node ${process.version}, ${iterations} ops x 5 runs, median)`);
for (const [name, ns] of Object.entries(results)) console.log(`  ${name.padEnd(46)} ${ns.toFixed(0).padStart(7)} ns/op`);
const render = results['full: select + collectVariables + applySelection'] - results['selectTemplate (binding -> experiment)'];
console.log(`  ${'  of which vars + render + body rewrite'.padEnd(46)} ${render.toFixed(0).padStart(7)} ns/op`);
if (sink === 42) console.log('');
