/**
 * Static checks of the Dockerfile (no Docker engine on the dev/CI machines): what it
 * copies exists and is not excluded by .dockerignore, the build stage produces what the
 * runtime stage copies, and the runtime stage runs as non-root with an exec-form CMD,
 * EXPOSE 8080 and a HEALTHCHECK.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Script } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import {
  dockerignoreMatcher,
  execForm,
  parseCopy,
  parseHealthcheck,
  parseRun,
  readDockerfile,
  stageEnv,
  stageWorkdir,
  type Stage,
} from './dockerfile.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const { stages } = readDockerfile(join(ROOT, 'Dockerfile'));
const final = stages[stages.length - 1];
const ignored = dockerignoreMatcher(existsSync(join(ROOT, '.dockerignore')) ? readFileSync(join(ROOT, '.dockerignore'), 'utf8') : '');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts?: Record<string, string> };

const of = (stage: Stage, cmd: string) => stage.instructions.filter((i) => i.cmd === cmd);
const stageByRef = (ref: string) => stages.find((s) => s.name === ref || String(s.index) === ref);

describe('Dockerfile (static)', () => {
  it('is multi-stage on node:20-bookworm-slim', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const s of stages) expect(s.image).toMatch(/^node:20(\.[\d.]+)?-bookworm-slim(@sha256:[0-9a-f]{64})?$/);
  });

  it('copies only files that exist in the build context and are not .dockerignored', () => {
    const missing: string[] = [];
    for (const s of stages) {
      for (const ins of [...of(s, 'COPY'), ...of(s, 'ADD')]) {
        const c = parseCopy(ins.args);
        if (c.flags.from !== undefined) continue;
        for (const src of c.sources) {
          if (!existsSync(join(ROOT, src))) missing.push(`line ${ins.line}: ${src} does not exist`);
          else if (ignored(src)) missing.push(`line ${ins.line}: ${src} is excluded by .dockerignore`);
        }
      }
    }
    expect(missing).toEqual([]);
  });

  it('copies from an earlier stage only what that stage produces (dist/ from the build)', () => {
    const copies = stages.flatMap((s) => of(s, 'COPY').map((ins) => ({ s, c: parseCopy(ins.args) }))).filter((x) => x.c.flags.from !== undefined);
    expect(copies.length).toBeGreaterThan(0);
    for (const { s, c } of copies) {
      const from = stageByRef(String(c.flags.from));
      expect(from, `COPY --from=${String(c.flags.from)} names a stage`).toBeDefined();
      expect(from!.index).toBeLessThan(s.index);
      const wd = stageWorkdir(from!);
      for (const src of c.sources) {
        const rel = posix.relative(wd, posix.resolve(wd, src));
        // What the build stage leaves at `rel`: its own COPYs, or the TypeScript output.
        const copied = of(from!, 'COPY').some((ins) => {
          const cc = parseCopy(ins.args);
          const dest = posix.relative(wd, posix.resolve(wd, cc.dest));
          return dest === rel || (cc.sources.length === 1 && posix.basename(cc.sources[0]) === rel);
        });
        if (copied) continue;
        const builds = of(from!, 'RUN').map((i) => parseRun(i.args).command);
        const runsBuild = builds.some((cmd) => /\bnpm run build\b|\btsc\b/.test(cmd));
        expect(runsBuild, `stage ${from!.name} builds ${rel}`).toBe(true);
        const tsconfig = JSON.parse(readFileSync(join(ROOT, 'tsconfig.build.json'), 'utf8')) as { compilerOptions?: { outDir?: string } };
        expect(posix.normalize(tsconfig.compilerOptions?.outDir ?? '')).toBe(rel);
      }
    }
  });

  it('every `npm run <script>` names a script in package.json', () => {
    const runs = stages.flatMap((s) => of(s, 'RUN').map((i) => parseRun(i.args).command));
    const scripts = runs.flatMap((cmd) => [...cmd.matchAll(/\bnpm run ([\w:-]+)/g)].map((m) => m[1]));
    expect(scripts.length).toBeGreaterThan(0);
    for (const name of scripts) expect(pkg.scripts ?? {}, `package.json scripts.${name} (used by the Dockerfile)`).toHaveProperty(name);
  });

  it('installs production dependencies only in the final stage', () => {
    const installs = of(final, 'RUN').map((i) => parseRun(i.args).command).filter((c) => /\bnpm (ci|install)\b/.test(c));
    expect(installs).toHaveLength(1);
    expect(installs[0]).toMatch(/\bnpm ci\b/);
    expect(installs[0]).toMatch(/--omit=dev\b/);
  });

  it('makes every file copied from the build context readable for the runtime user, whatever the checkout\'s umask', () => {
    const chmods = of(final, 'RUN').map((i) => parseRun(i.args).command).filter((c) => /^chmod -R a\+rX /.test(c));
    expect(chmods).toHaveLength(1);
    const made = new Set(chmods[0].split(/\s+/).slice(3));
    const fromContext = of(final, 'COPY')
      .map((i) => parseCopy(i.args))
      .filter((c) => c.flags.from === undefined)
      .flatMap((c) => c.sources);
    expect(fromContext.length).toBeGreaterThan(0);
    for (const src of fromContext) expect(made, src).toContain(src.replace(/\/$/, ''));
  });

  it('runs as a numeric non-root user', () => {
    const users = of(final, 'USER');
    expect(users.length).toBeGreaterThan(0);
    const user = users[users.length - 1].args.trim();
    const [uid, gid] = user.split(':');
    expect(uid, 'numeric uid, so Kubernetes can verify runAsNonRoot').toMatch(/^\d+$/);
    expect(Number(uid)).not.toBe(0);
    if (gid !== undefined) expect(Number(gid)).not.toBe(0);
    // Nothing runs as root after USER (no RUN after it).
    const lastUserIdx = final.instructions.lastIndexOf(users[users.length - 1]);
    expect(final.instructions.slice(lastUserIdx).filter((i) => i.cmd === 'RUN')).toEqual([]);
  });

  it('CMD is exec form and starts node on the compiled CLI entry', () => {
    const cmds = of(final, 'CMD');
    expect(cmds.length).toBeGreaterThan(0);
    const cmd = execForm(cmds[cmds.length - 1].args);
    expect(cmd, 'exec-form CMD (JSON array), so node is PID 1 and gets SIGTERM').toBeDefined();
    expect(cmd![0]).toBe('node');
    // No shell-form ENTRYPOINT wrapping it.
    for (const e of of(final, 'ENTRYPOINT')) expect(execForm(e.args)).toBeDefined();
    // dist/<x>.js comes from src/<x>.ts.
    const script = cmd!.find((a) => a.endsWith('.js'));
    expect(script).toBeDefined();
    const src = script!.replace(/^dist\//, 'src/').replace(/\.js$/, '.ts');
    expect(existsSync(join(ROOT, src)), `${src} exists (compiled to ${script})`).toBe(true);
  });

  it('exposes 8080', () => {
    const ports = of(final, 'EXPOSE').flatMap((i) => i.args.split(/\s+/));
    expect(ports.map((p) => p.replace(/\/tcp$/, ''))).toContain('8080');
  });

  it('has a HEALTHCHECK on /healthz that needs only node', () => {
    const hcs = of(final, 'HEALTHCHECK');
    expect(hcs).toHaveLength(1);
    const hc = parseHealthcheck(hcs[0].args);
    expect(hc.none).toBe(false);
    expect(hc.cmd, 'exec form (no shell dependency)').toBeDefined();
    expect(hc.cmd![0]).toBe('node');
    const code = hc.cmd![hc.cmd!.indexOf('-e') + 1];
    expect(code).toContain('/healthz');
    expect(() => new Script(code)).not.toThrow();
    for (const f of ['interval', 'timeout', 'retries']) expect(hc.flags).toHaveProperty(f);
  });

  it('sets NODE_ENV=production and PROMPTGATE_CONFIG to the copied config', () => {
    const env = stageEnv(final);
    expect(env.NODE_ENV).toBe('production');
    const wd = stageWorkdir(final);
    const dests = of(final, 'COPY').flatMap((ins) => {
      const c = parseCopy(ins.args);
      return c.sources.map((s) => {
        const d = posix.resolve(wd, c.dest);
        return c.dest.endsWith('/') ? posix.join(d, posix.basename(s)) : d;
      });
    });
    expect(env.PROMPTGATE_CONFIG).toBeDefined();
    expect(dests).toContain(env.PROMPTGATE_CONFIG);
  });

  it('the shipped config finds its templates inside the image', () => {
    const configPath = join(ROOT, 'gateway.config.yaml');
    expect(existsSync(configPath), 'gateway.config.yaml exists').toBe(true);
    const cfg = (parseYaml(readFileSync(configPath, 'utf8')) ?? {}) as { templates?: { dir?: string } };
    const dir = posix.normalize(cfg.templates?.dir ?? 'config/templates');
    const wd = stageWorkdir(final);
    const copiedDirs = of(final, 'COPY')
      .map((ins) => parseCopy(ins.args))
      .filter((c) => c.flags.from === undefined)
      .map((c) => posix.relative(wd, posix.resolve(wd, c.dest)));
    // templates.dir is relative to the config file, which sits in WORKDIR.
    expect(copiedDirs.some((d) => dir === d || dir.startsWith(`${d}/`)), `${dir} is copied into the image`).toBe(true);
  });

  it('every `docker run` of the image waits out the drain before SIGKILL (was: docker\'s 10 s default, under the 25 s drain)', () => {
    const cfg = (parseYaml(readFileSync(join(ROOT, 'gateway.config.yaml'), 'utf8')) ?? {}) as { server?: { drain_timeout_ms?: number } };
    const drainMs = cfg.server?.drain_timeout_ms ?? 25_000;
    const runs = ['README.md', 'Dockerfile'].flatMap((file) =>
      readFileSync(join(ROOT, file), 'utf8')
        .split('\n')
        .filter((line) => /docker run .*\bpromptgate\s*$/.test(line))
        .map((line) => ({ file, line })),
    );
    expect(runs.length).toBeGreaterThanOrEqual(2);
    for (const { file, line } of runs) {
      const timeout = /--stop-timeout[ =](\d+)/.exec(line);
      expect(timeout, `${file}: ${line.trim()}`).not.toBeNull();
      expect(Number(timeout![1]) * 1000, `${file}: ${line.trim()}`).toBeGreaterThan(drainMs);
    }
  });

  it('.dockerignore keeps secrets, VCS and host artefacts out of the context', () => {
    for (const p of ['.git', 'node_modules', 'dist', '.env', 'coverage', 'node_modules/x/y.js', 'src/a.test.ts']) {
      expect(ignored(p), p).toBe(true);
    }
    for (const p of ['package.json', 'package-lock.json', 'src/main.ts', 'config/templates/x.yaml', 'assets/bpe/o200k_base.bin']) {
      expect(ignored(p), p).toBe(false);
    }
  });
});
