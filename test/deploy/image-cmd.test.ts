/**
 * Runs the image's CMD exactly as the Dockerfile writes it, against a production install
 * made the way the Dockerfile makes it (there is no Docker engine on dev/CI machines).
 *
 * The Dockerfile is replayed, not re-described: each stage's WORKDIR becomes a temp dir,
 * COPY copies from the repository (honouring .dockerignore) or from the replayed earlier
 * stage, `npm ci` runs for real in the runtime stage (offline from the npm cache when it
 * can) and `npm run <script>` runs in the build stage (whose `npm ci` is the repository's
 * own node_modules, linked). Then CMD starts with the stage's ENV (paths mapped into the
 * temp dir), a free PORT, and, when the test runs as root, the image's numeric USER on
 * root-owned files as in the image. Checked: /healthz, /readyz, a chat completion on the
 * embedded simulator, the HEALTHCHECK command, and SIGTERM during a stream: the stream
 * completes, readiness is gone, and the process exits 0.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, posix, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  dockerignoreMatcher,
  execForm,
  parseCopy,
  parseEnv,
  parseHealthcheck,
  parseRun,
  readDockerfile,
  type Stage,
} from './dockerfile.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const { stages } = readDockerfile(join(ROOT, 'Dockerfile'));
const ignored = dockerignoreMatcher(existsSync(join(ROOT, '.dockerignore')) ? readFileSync(join(ROOT, '.dockerignore'), 'utf8') : '');

interface Replayed {
  stage: Stage;
  /** Host directory standing for the stage's WORKDIR. */
  dir: string;
  workdir: string;
  env: Record<string, string>;
  user?: string;
  cmd?: string[];
  healthcheck?: string[];
}

const replayed = new Map<string, Replayed>();
let work = '';

function hostPath(r: Replayed, containerPath: string): string {
  const abs = posix.resolve(r.workdir, containerPath);
  const rel = posix.relative(r.workdir, abs);
  if (rel.startsWith('..')) throw new Error(`${containerPath} is outside WORKDIR ${r.workdir}; extend the replay`);
  return join(r.dir, rel);
}

function run(cmd: string, args: string[], cwd: string, timeoutMs = 300_000): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: timeoutMs, env: { ...process.env, npm_config_update_notifier: 'false' } });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

function npmCi(args: string[], cwd: string): void {
  // Offline from the warm npm cache first; then allow the registry; as a last resort (no
  // network) the repository's node_modules minus devDependencies.
  const attempts = [[...args, '--offline'], [...args, '--prefer-offline']];
  const errors: string[] = [];
  for (const a of attempts) {
    const r = run('npm', a, cwd);
    if (r.ok) return;
    errors.push(`npm ${a.join(' ')}:\n${r.out.slice(-2000)}`);
  }
  cpSync(join(ROOT, 'node_modules'), join(cwd, 'node_modules'), { recursive: true, verbatimSymlinks: true });
  const r = run('npm', ['prune', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund'], cwd);
  if (!r.ok) throw new Error(`production install failed:\n${errors.join('\n')}\nnpm prune:\n${r.out}`);
  console.warn(`[deploy] npm ci failed offline and online; used node_modules + npm prune --omit=dev\n${errors.join('\n')}`);
}

function replay(stage: Stage): Replayed {
  const dir = join(work, stage.name ?? `stage${stage.index}`);
  mkdirSync(dir, { recursive: true });
  const r: Replayed = { stage, dir, workdir: '/', env: {} };
  let workdirs = 0;
  for (const ins of stage.instructions) {
    switch (ins.cmd) {
      case 'WORKDIR':
        if (++workdirs > 1) throw new Error('replay supports one WORKDIR per stage');
        r.workdir = posix.resolve(r.workdir, ins.args);
        break;
      case 'ENV':
        Object.assign(r.env, parseEnv(ins.args));
        break;
      case 'COPY': {
        const c = parseCopy(ins.args);
        const from = c.flags.from === undefined ? undefined : replayed.get(String(c.flags.from));
        if (c.flags.from !== undefined && !from) throw new Error(`COPY --from=${String(c.flags.from)}: stage not replayed`);
        for (const src of c.sources) {
          const hostSrc = from ? hostPath(from, src) : join(ROOT, src);
          const destIsDir = c.dest.endsWith('/') || c.sources.length > 1;
          const dest = hostPath(r, destIsDir ? posix.join(c.dest, posix.basename(src)) : c.dest);
          mkdirSync(dirname(dest), { recursive: true });
          cpSync(hostSrc, dest, {
            recursive: true,
            dereference: true,
            filter: (p) => from !== undefined || !ignored(relative(ROOT, p).split('\\').join('/')),
          });
        }
        break;
      }
      case 'RUN': {
        const { command } = parseRun(ins.args);
        for (const part of command.split('&&').map((x) => x.trim())) {
          const words = part.split(/\s+/);
          if (words[0] === 'npm' && words[1] === 'ci') {
            if (words.includes('--omit=dev')) npmCi(words.slice(1), r.dir);
            else symlinkSync(join(ROOT, 'node_modules'), join(r.dir, 'node_modules'), 'dir'); // dev install = the repo's own
          } else if (words[0] === 'chmod') {
            const res = spawnSync('chmod', words.slice(1).map((w) => (w.startsWith('-') || /^[ugoa]*[+-=]/.test(w) ? w : hostPath(r, w))));
            if (res.status !== 0) throw new Error(`${part} failed in the ${stage.name} stage: ${String(res.stderr)}`);
          } else if (words[0] === 'npm' && words[1] === 'run') {
            const res = run('npm', words.slice(1), r.dir);
            if (!res.ok) throw new Error(`${part} failed in the ${stage.name} stage:\n${res.out}`);
          } else {
            throw new Error(`replay does not know RUN "${part}"; extend test/deploy/image-cmd.test.ts`);
          }
        }
        break;
      }
      case 'USER':
        r.user = ins.args.trim();
        break;
      case 'CMD':
        r.cmd = execForm(ins.args);
        break;
      case 'HEALTHCHECK':
        r.healthcheck = parseHealthcheck(ins.args).cmd;
        break;
      default:
        break; // EXPOSE, LABEL, ARG...
    }
  }
  replayed.set(stage.name ?? String(stage.index), r);
  replayed.set(String(stage.index), r);
  return r;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

interface Started {
  child: ChildProcess;
  port: number;
  output: () => string;
  exit: Promise<number | null>;
}

let image: Replayed;

function start(extraEnv: Record<string, string>, port: number): Started {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin', HOME: '/nonexistent' };
  for (const [k, v] of Object.entries(image.env)) {
    env[k] = v.startsWith(`${image.workdir}/`) || v === image.workdir ? hostPath(image, v) : v;
  }
  Object.assign(env, { PORT: String(port) }, extraEnv);
  const [uid, gid] = (image.user ?? '').split(':').map(Number);
  const asImageUser = process.getuid?.() === 0 && Number.isInteger(uid);
  const child = spawn(image.cmd![0], image.cmd!.slice(1), {
    cwd: image.dir,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(asImageUser ? { uid, gid: Number.isInteger(gid) ? gid : uid } : {}),
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, port, output: () => out, exit };
}

async function waitHealthy(s: Started, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void s.exit.then(() => (exited = true));
  while (Date.now() < deadline) {
    if (exited) throw new Error(`gateway exited before /healthz answered:\n${s.output()}`);
    try {
      const r = await fetch(`http://127.0.0.1:${s.port}/healthz`);
      if (r.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`/healthz did not answer 200 within ${timeoutMs} ms:\n${s.output()}`);
}

const chatBody = (extra: object = {}) =>
  JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], ...extra });

const running: Started[] = [];

describe('image CMD on a production install', () => {
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'promptgate-image-'));
    chmodSync(work, 0o755); // readable by the image's non-root user
    for (const s of stages) replay(s);
    image = replayed.get(String(stages.length - 1))!;
    // As in the image: root-owned, world-readable (whatever the umask here).
    spawnSync('chmod', ['-R', 'a+rX', work]);
    expect(image.cmd, 'exec-form CMD').toBeDefined();
  }, 300_000);

  afterAll(() => {
    for (const s of running) if (s.child.exitCode === null) s.child.kill('SIGKILL');
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('installed production dependencies only', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
    for (const dep of Object.keys(pkg.dependencies ?? {})) expect(existsSync(join(image.dir, 'node_modules', dep)), dep).toBe(true);
    // Lockfile entries only devDependencies need (`"dev": true`) are absent.
    const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
    const devOnly = Object.entries(lock.packages).filter(([path, p]) => path.startsWith('node_modules/') && p.dev === true).map(([path]) => path);
    expect(devOnly.length).toBeGreaterThan(0);
    expect(devOnly.filter((path) => existsSync(join(image.dir, path)))).toEqual([]);
  });

  it('serves health, readiness and a chat completion, passes its HEALTHCHECK, and exits 0 on SIGTERM', async () => {
    const s = start({}, await freePort());
    running.push(s);
    await waitHealthy(s);
    const base = `http://127.0.0.1:${s.port}`;

    expect((await fetch(`${base}/readyz`)).status).toBe(200);

    const res = await fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chatBody() });
    const body = (await res.json()) as { choices?: { message?: { content?: string } }[] };
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect(body.choices?.length).toBeGreaterThan(0);
    expect(typeof body.choices![0].message?.content).toBe('string');

    expect((await fetch(`${base}/metrics`)).status).toBe(200);

    // The Dockerfile's HEALTHCHECK command, run as Docker would (same env, same cwd).
    if (image.healthcheck) {
      const hc = spawnSync(image.healthcheck[0], image.healthcheck.slice(1), { cwd: image.dir, env: { PATH: process.env.PATH, PORT: String(s.port) }, timeout: 10_000 });
      expect(hc.status, 'HEALTHCHECK exit code while healthy').toBe(0);
    }

    s.child.kill('SIGTERM');
    expect(await s.exit, s.output()).toBe(0);

    if (image.healthcheck) {
      const hc = spawnSync(image.healthcheck[0], image.healthcheck.slice(1), { cwd: image.dir, env: { PATH: process.env.PATH, PORT: String(s.port) }, timeout: 10_000 });
      expect(hc.status, 'HEALTHCHECK exit code once stopped').not.toBe(0);
    }
  }, 120_000);

  it('drains an in-flight stream on SIGTERM (config overridden through PROMPTGATE_CONFIG)', async () => {
    // A slow simulated upstream, so that the stream is still open when SIGTERM arrives.
    const cfgDir = join(work, 'override');
    mkdirSync(cfgDir, { recursive: true });
    chmodSync(cfgDir, 0o755);
    const templates = relative(cfgDir, hostPath(image, 'config/templates')).split('\\').join('/');
    writeFileSync(
      join(cfgDir, 'gateway.config.yaml'),
      [
        'server: {drain_timeout_ms: 15000}',
        'upstreams:',
        '  - name: simulator',
        '    simulate: {latency_ms: 50, chunks: 16, chunk_interval_ms: 150}',
        'routing: {default: [simulator]}',
        `templates: {dir: "${templates}"}`,
        '',
      ].join('\n'),
    );
    chmodSync(join(cfgDir, 'gateway.config.yaml'), 0o644);
    const s = start({ PROMPTGATE_CONFIG: join(cfgDir, 'gateway.config.yaml') }, await freePort());
    running.push(s);
    await waitHealthy(s);
    const base = `http://127.0.0.1:${s.port}`;

    const res = await fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chatBody({ stream: true }) });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    const first = await reader.read();
    text += decoder.decode(first.value, { stream: true });
    expect(text).toContain('data: ');
    expect(text).not.toContain('[DONE]');

    const termAt = Date.now();
    s.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 100));
    // Readiness is gone at once: a 503, or no listener any more.
    const ready = await fetch(`${base}/readyz`).then((r) => r.status, () => 'refused');
    expect(ready).not.toBe(200);

    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    expect(text.trimEnd().endsWith('data: [DONE]'), 'the stream completes after SIGTERM').toBe(true);
    expect(await s.exit, s.output()).toBe(0);
    expect(Date.now() - termAt).toBeLessThan(15_000);
  }, 120_000);
});
