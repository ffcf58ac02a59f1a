import { Counter, Histogram, Registry } from 'prom-client';
const registry = new Registry();
const names = ['a','b','c','d','e','f','g','h','i','j','k','l'];
const c = new Counter({ name: 'x_total', help: 'x', labelNames: names, registers: [registry] });
const h = new Histogram({ name: 'y', help: 'y', labelNames: names.slice(0, 10), buckets: [0.01,0.02,0.04,0.08,0.16,0.32,0.64,1.28,2.56,5.12,10.24,20.48,40.96,81.92], registers: [registry] });
const vals = names.map((n) => n + '-value');
const cc = c.labels(...vals); const hc = h.labels(...vals.slice(0, 10));
const N = 1_000_000;
function t(name: string, f: () => void) { for (let i = 0; i < 100000; i++) f(); const t0 = process.hrtime.bigint(); for (let i = 0; i < N; i++) f(); console.log(name, (Number(process.hrtime.bigint() - t0) / N).toFixed(0), 'ns/op'); }
t('counter.inc(labelsObject)', () => c.inc(Object.fromEntries(names.map((n, i) => [n, vals[i]])) as never, 1));
t('cached counter.labels(...) child .inc', () => cc.inc(1));
t('cached histogram.labels(...) child .observe', () => hc.observe(0.5));
