/**
 * Trains the prompt-injection model and writes src/guard/injection-model.json.
 *
 *   npm run train:guard        (tsx scripts/train-guard.ts)
 *
 * Data: The train split (546 rows: 203 injection, 343 benign) of the public dataset
 * `deepset/prompt-injections` by deepset, licensed Apache-2.0 (Hugging Face dataset card).
 * Read from ../shared/data/injection/ relative to the repository root.
 *
 * Training is deterministic (full-batch, zero initial weights, no random state): the same
 * data gives the same file, byte for byte; src/guard/train.test.ts checks it.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEEPSET_ATTRIBUTION, deepsetTrainPath, readJsonlRows, trainInjectionModel } from '../src/guard/train.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(repoRoot, 'src/guard/injection-model.json');

const rows = readJsonlRows(deepsetTrainPath(repoRoot));
const started = performance.now();
const model = trainInjectionModel(rows, { data: DEEPSET_ATTRIBUTION });
writeFileSync(out, `${JSON.stringify(model, null, 2)}\n`);
const seconds = ((performance.now() - started) / 1000).toFixed(1);
console.log(`trained on ${rows.length} rows in ${seconds}s -> ${path.relative(repoRoot, out)}`);
console.log(`bias ${model.bias.toFixed(3)}; family weights:`);
for (const [name, w] of Object.entries(model.families)) console.log(`  ${name.padEnd(22)} ${w.toFixed(3)}`);
