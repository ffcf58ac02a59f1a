/**
 * The experiment behind README "Injection guard" (variants of the model's n-gram length
 * factor): retrains the model with one variant and prints cross-validation, support,
 * multilingual, tool-result and long-message figures. Slow; not part of the build or tests.
 *
 *   npx tsx scripts/guard-length-variants.ts log:64     # sqrt | cap:N | log:N | win:W
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { DEFAULT_FEATURE_SPEC, FAMILY_NAMES, FAMILY_PRIORS, FeatureExtractor } from '../src/guard/features.js';
import { INJECTION_MODEL_FORMAT, quantizeWeights, loadModel, sigmoid } from '../src/guard/model.js';
import { deepsetTrainPath, readJsonlRows, DEFAULT_TRAIN_OPTIONS, type TrainingRow } from '../src/guard/train.js';
import { createInjectionScanner } from '../src/guard/scanner.js';
import { seededRandom } from './seeded-random.js';

const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const variantArg = process.argv[2] ?? 'sqrt';
// variant: sqrt | cap:N (mean * sqrt(min(n,N))) | log:N (mean*sqrt(N ln(1+n/N))) | win:W (max over windows of W chars, hop W/2)
const [kind, param] = variantArg.split(':');
const P = Number(param);

interface Win { idx: Int32Array; val: Float64Array }
interface Row { wins: Win[]; fam: Uint8Array; y: number; weight: number }
const spec = DEFAULT_FEATURE_SPEC;
const fx = new FeatureExtractor({ spec });

function sparse(ids: number[], scale: (total: number) => number): Win {
  ids.sort((a, b) => a - b);
  const idx: number[] = []; const cnt: number[] = [];
  for (let i = 0; i < ids.length; i++) {
    if (i > 0 && ids[i] === ids[i - 1]) cnt[cnt.length - 1]++; else { idx.push(ids[i]); cnt.push(1); }
  }
  const s = ids.length > 0 ? scale(ids.length) : 0;
  return { idx: Int32Array.from(idx), val: Float64Array.from(cnt, (c) => c * s) };
}
const g = (n: number): number => {
  if (kind === 'sqrt' || kind === 'win') return Math.sqrt(n);
  if (kind === 'cap') return Math.sqrt(Math.min(n, P));
  if (kind === 'log') return Math.sqrt(P * Math.log1p(n / P));
  throw new Error(kind);
};
function featurizeOne(text: string): { wins: Win[]; fam: Uint8Array } {
  fx.extract(text);
  const count = fx.count;
  const ind = fx.indices;
  const fam = fx.families.slice();
  if (kind !== 'win') {
    return { wins: [sparse(Array.from(ind.subarray(0, count)), (t) => g(t) / t)], fam };
  }
  // positions: char n-grams 3 per position 0..n; word n-grams at word start
  const words = fx.normalizer.words;
  let nChars = 0;
  // number of char positions: first 3*(nChars+1) entries are char grams; total = that + word grams
  let wordGrams = 0;
  for (let j = 0; j < words.count; j++) wordGrams += j > 0 ? 2 : 1;
  nChars = (count - wordGrams) / 3 - 1;
  const pos = new Int32Array(count);
  for (let i = 0; i <= nChars; i++) pos[3 * i] = pos[3 * i + 1] = pos[3 * i + 2] = i;
  let k = 3 * (nChars + 1);
  for (let j = 0; j < words.count; j++) { pos[k++] = words.at[j]; if (j > 0) pos[k++] = words.at[j]; }
  const W = P; const hop = W / 2;
  const wins: Win[] = [];
  const len = nChars + 1;
  const nw = len <= W ? 1 : Math.ceil((len - W) / hop) + 1;
  for (let w = 0; w < nw; w++) {
    const lo = w * hop, hi = lo + W;
    const ids: number[] = [];
    for (let i = 0; i < count; i++) if (pos[i] >= lo && pos[i] < hi) ids.push(ind[i]);
    wins.push(sparse(ids, (t) => 1 / Math.sqrt(t)));
  }
  return { wins, fam };
}

function train(rows: TrainingRow[]) {
  const o = DEFAULT_TRAIN_OPTIONS;
  const data: Row[] = rows.map((r) => ({ ...featurizeOne(r.text), y: r.label, weight: r.label === 1 ? 1 : o.benignWeight }));
  const size = 1 << spec.bits; const F = FAMILY_NAMES.length; const NP = size + F + 1;
  const theta = new Float64Array(NP);
  for (let f = 0; f < F; f++) theta[size + f] = FAMILY_PRIORS[f];
  const grad = new Float64Array(NP), m = new Float64Array(NP), v = new Float64Array(NP);
  let tw = 0; for (const r of data) tw += r.weight;
  for (let t = 1; t <= o.iterations; t++) {
    grad.fill(0);
    for (const r of data) {
      let z = theta[NP - 1];
      for (let f = 0; f < F; f++) if (r.fam[f]) z += theta[size + f];
      let best = 0, bestW = -Infinity;
      for (let w = 0; w < r.wins.length; w++) {
        const win = r.wins[w]; let s = 0;
        for (let k = 0; k < win.idx.length; k++) s += theta[win.idx[k]] * win.val[k];
        if (s > bestW) { bestW = s; best = w; }
      }
      z += bestW;
      const gg = ((sigmoid(z) - r.y) * r.weight) / tw;
      for (let f = 0; f < F; f++) if (r.fam[f]) grad[size + f] += gg;
      const win = r.wins[best];
      for (let k = 0; k < win.idx.length; k++) grad[win.idx[k]] += gg * win.val[k];
      grad[NP - 1] += gg;
    }
    for (let j = 0; j < size; j++) grad[j] += o.l2 * theta[j];
    for (let f = 0; f < F; f++) grad[size + f] += o.familyL2 * (theta[size + f] - FAMILY_PRIORS[f]);
    const lr = (o.learningRate * Math.sqrt(1 - 0.999 ** t)) / (1 - 0.9 ** t);
    for (let j = 0; j < NP; j++) {
      const gj = grad[j]; if (gj === 0 && m[j] === 0) continue;
      m[j] = 0.9 * m[j] + 0.1 * gj; v[j] = 0.999 * v[j] + 0.001 * gj * gj;
      theta[j] -= (lr * m[j]) / (Math.sqrt(v[j]) + 1e-8);
    }
  }
  const families: Record<string, number> = {};
  FAMILY_NAMES.forEach((n, f) => (families[n] = theta[size + f]));
  const file = { format: INJECTION_MODEL_FORMAT, data: '', spec, training: {}, bias: theta[NP - 1], families, ...quantizeWeights(theta.subarray(0, size)) };
  return file;
}
type Scorer = (text: string) => { score: number; flagged: boolean; familyHit: boolean; modelOnly: number };
function scorer(file: ReturnType<typeof train>): Scorer {
  const mdl = loadModel(file);
  return (text) => {
    if (text.length === 0) return { score: 0, flagged: false, familyHit: false, modelOnly: 0 };
    const { wins, fam } = featurizeOne(text);
    let best = -Infinity;
    for (const w of wins) { let s = 0; for (let k = 0; k < w.idx.length; k++) s += mdl.weights[w.idx[k]] * w.val[k]; best = Math.max(best, s); }
    const ml = mdl.bias + best;
    let logit = ml; let fh = false;
    for (let f = 0; f < fam.length; f++) if (fam[f]) { logit += mdl.familyWeights[f]; if (f < fam.length - 1) fh = true; }
    const score = sigmoid(logit);
    return { score, flagged: score >= 0.5, familyHit: fh, modelOnly: sigmoid(ml) };
  };
}

// ---- folds (copied from scripts/eval-guard.ts)
function shuffle<T>(xs: T[], rand: () => number): T[] { for (let i = xs.length - 1; i > 0; i--) { const j = Math.floor(rand() * (i + 1)); [xs[i], xs[j]] = [xs[j], xs[i]]; } return xs; }
function stratifiedFolds(rows: TrainingRow[], k: number, seed: number): number[] { const rand = seededRandom(seed); const fold = new Array<number>(rows.length); for (const label of [0, 1]) { const ids = shuffle(rows.flatMap((r, i) => (r.label === label ? [i] : [])), rand); ids.forEach((id, j) => { fold[id] = j % k; }); } return fold; }
function groupedFolds(rows: TrainingRow[], k: number, seed: number): number[] {
  const parent = rows.map((_, i) => i); const find = (i: number): number => (parent[i] === i ? i : (parent[i] = find(parent[i]))); const owner = new Map<string, number>();
  rows.forEach((r, i) => { const words = r.text.toLowerCase().match(/[\p{L}\p{N}']+/gu) ?? []; for (let j = 0; j + 4 <= words.length; j++) { const sh = words.slice(j, j + 4).join(' '); const o = owner.get(sh); if (o === undefined) owner.set(sh, i); else parent[find(i)] = find(o); } });
  const groups = new Map<number, number[]>(); rows.forEach((_, i) => { const gg = find(i); groups.set(gg, [...(groups.get(gg) ?? []), i]); });
  const rand = seededRandom(seed); const ordered = shuffle([...groups.values()], rand).sort((a, b) => b.length - a.length);
  const size = new Array<number>(k).fill(0); const fold = new Array<number>(rows.length);
  for (const gr of ordered) { const f = size.indexOf(Math.min(...size)); for (const i of gr) fold[i] = f; size[f] += gr.length; } return fold;
}
function fixture(name: string): string[] {
  return readFileSync(path.join(repo, 'src/guard/fixtures', name), 'utf8').split('\n').filter((l) => l.startsWith('[')).map((l) => l.slice(5).replace(/\\(\\|n)/g, (_, c: string) => (c === 'n' ? '\n' : '\\')));
}
const rows = readJsonlRows(deepsetTrainPath(repo));
const support = readFileSync(path.join(repo, 'test/fixtures/benign-support.txt'), 'utf8').split('\n').filter((l) => l.trim() !== '');
const K = 5, SEED = 20241123;
function cv(fold: number[]) {
  let tp = 0, fp = 0, fn = 0, tn = 0, sfp = 0;
  for (let f = 0; f < K; f++) {
    const s = scorer(train(rows.filter((_, i) => fold[i] !== f)));
    rows.forEach((r, i) => { if (fold[i] !== f) return; const p = s(r.text).flagged; if (p && r.label) tp++; else if (p) fp++; else if (r.label) fn++; else tn++; });
    sfp += support.filter((q) => s(q).flagged).length;
  }
  const precision = tp / (tp + fp), recall = tp / (tp + fn);
  return { precision: +precision.toFixed(3), recall: +recall.toFixed(3), f1: +((2 * precision * recall) / (precision + recall)).toFixed(3), supportFp: `${sfp}/${K * support.length}` };
}
const full = train(rows);
const s = scorer(full);
if (kind === 'sqrt') {
  // sanity: matches the shipped scanner
  const sc = createInjectionScanner();
  let maxd = 0; for (const t of [...support, ...fixture('benign-tool-results.txt').slice(0, 100)]) maxd = Math.max(maxd, Math.abs(sc.scan(t).score - s(t).score));
  console.error('max |shipped - reimpl| =', maxd);
}
const rate = (xs: string[]) => { const n = xs.filter((t) => s(t).flagged).length; return `${n}/${xs.length}`; };
const longB = fixture('benign-long-messages.txt');
const res = {
  variant: variantArg,
  stratified: cv(stratifiedFolds(rows, K, SEED)),
  grouped: cv(groupedFolds(rows, K, SEED)),
  supportShipped: rate(support),
  multiBenign: rate(fixture('benign-multilingual.txt')),
  multiAttacks: rate(fixture('attacks-multilingual.txt')),
  toolBenign: rate(fixture('benign-tool-results.txt')),
  toolBenignModelOnly: `${fixture('benign-tool-results.txt').filter((t) => { const r = s(t); return r.flagged && !r.familyHit; }).length}`,
  toolAttacks: rate(fixture('attacks-in-tool-results.txt')),
  longBenign: rate(longB),
  longAttacks: rate(fixture('attacks-in-long-messages.txt')),
  longAttacksModelAlone: `${fixture('attacks-in-long-messages.txt').filter((t) => s(t).modelOnly >= 0.5).length}`,
  multiFlagged: fixture('benign-multilingual.txt').filter((t) => s(t).flagged),
  supportFlagged: support.filter((t) => s(t).flagged),
};
console.log(JSON.stringify(res));
