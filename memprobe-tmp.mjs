import { spawn } from 'node:child_process';
import { request } from 'undici';
const flags = process.argv.slice(2);
const wait = (ms) => new Promise((r) => setTimeout(r, ms));
const mock = spawn(process.execPath, ['scripts/bench/mock-upstream.mjs'], { stdio: ['ignore', 'pipe', 'inherit'] });
const mockPort = await new Promise((r) => mock.stdout.on('data', (d) => { const m = /READY (\d+)/.exec(String(d)); if (m) r(Number(m[1])); }));
const port = 18000 + Math.floor(Math.random() * 1000);
const gw = spawn(process.execPath, process.env.FWD ? ['--expose-gc', '-r', '/tmp/memdump.cjs', 'scripts/bench/forwarder.mjs'] : ['--expose-gc', '-r', '/tmp/memdump.cjs', '--heapsnapshot-signal=SIGUSR1', ...flags, 'dist/main.js', '--config', 'scripts/bench/gateway.bench.yaml', '--port', String(port)], {
  stdio: ['ignore', 'ignore', 'inherit'],
  env: { ...process.env, BENCH_PORT: String(port), BENCH_UPSTREAM_ORIGIN: `http://127.0.0.1:${mockPort}`, BENCH_UPSTREAM_URL: `http://127.0.0.1:${mockPort}/v1`, PORT: '', OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${mockPort}`, OTEL_TRACES_EXPORTER: 'otlp' },
});
for (let i = 0; i < 100; i++) { try { await request(`http://127.0.0.1:${port}/readyz`, process.env.FWD ? {method:'POST', body:'{}'} : {}).then((r) => r.body.dump()); break; } catch { await wait(100); } }
const { readFileSync } = await import('node:fs');
const body = readFileSync('/tmp/bench-body.json', 'utf8');
const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${gw.pid}/status`, 'utf8'))[1]) / 1000;
console.log('rss at ready', rss()); gw.kill('SIGUSR2'); await wait(400);
for (let i = 0; i < 200; i++) { const r = await request(`http://127.0.0.1:${port}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body }); await r.body.text(); if (i===0) console.log('status', r.statusCode); }
await wait(300);
console.log('rss after 200', rss());
gw.kill('SIGUSR2'); await wait(500); if (process.env.SNAP) { gw.kill('SIGUSR1'); await wait(6000); }
gw.kill('SIGTERM'); mock.kill('SIGTERM');
