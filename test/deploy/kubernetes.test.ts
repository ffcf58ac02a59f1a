/**
 * deploy/kubernetes: every kustomization renders with `kubectl kustomize`, every rendered
 * object validates offline against the Kubernetes OpenAPI schemas (kubernetes-models,
 * plus an unknown-field check), and the sidecar wiring holds: native sidecar (or the
 * plain-container variant's hooks), probes, Pod Security "restricted", resources, grace
 * period vs drain timeout, config mounted as a directory, secrets, OTel and scraping.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Script } from 'node:vm';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import {
  allContainers,
  kubectlVersion,
  kustomize,
  memoryBytes,
  parseManifests,
  podSpecOf,
  validateObject,
  type Container,
  type K8sObject,
  type PodSpec,
} from './k8s.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const K8S = join(ROOT, 'deploy', 'kubernetes');
const KUBECTL = kubectlVersion();
if (!KUBECTL) console.warn('[deploy] kubectl not found: skipping the kustomize render checks (CI must install kubectl)');

/** The gateway's highest measured peak RSS with 1,000 open streams (over the rounds of BENCHMARKS.md's memory table). */
const PEAK_RSS_BYTES = (() => {
  const rows = [...readFileSync(join(ROOT, 'BENCHMARKS.md'), 'utf8').matchAll(/^\| \d+ \| gateway \| 1000 \|(?: [^|]+ \|){3} ([\d.]+) \|$/gm)];
  if (rows.length === 0) throw new Error('BENCHMARKS.md has no gateway row in its memory table');
  return Math.max(...rows.map((r) => Number(r[1]))) * 1000 * 1000;
})();
const DEFAULT_DRAIN_MS = 25_000;

function kustomizations(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (!statSync(p).isDirectory()) continue;
    if (existsSync(join(p, 'kustomization.yaml'))) out.push(p);
    out.push(...kustomizations(p));
  }
  return out;
}

const DIRS = kustomizations(K8S).map((d) => relative(K8S, d));
const rendered = new Map<string, K8sObject[]>();
function render(dir: string): K8sObject[] {
  let objs = rendered.get(dir);
  if (!objs) {
    objs = kustomize(join(K8S, dir));
    rendered.set(dir, objs);
  }
  return objs;
}

interface Sidecar {
  deployment: K8sObject;
  pod: PodSpec;
  gateway: Container;
  native: boolean;
  app: Container[];
}

function sidecarsOf(objs: K8sObject[]): Sidecar[] {
  const out: Sidecar[] = [];
  for (const o of objs) {
    const pod = podSpecOf(o);
    if (!pod) continue;
    const isGateway = (c: Container) => c.name === 'promptgate';
    const init = (pod.initContainers ?? []).find(isGateway);
    const regular = pod.containers.find(isGateway);
    const gateway = init ?? regular;
    if (!gateway) continue;
    out.push({ deployment: o, pod, gateway, native: init !== undefined, app: pod.containers.filter((c) => !isGateway(c)) });
  }
  return out;
}

const envValue = (c: Container, name: string) => c.env?.find((e) => e.name === name);
const gatewayPort = (c: Container) => c.ports?.find((p) => p.containerPort === 8080 || p.name === 'promptgate');
const probePort = (c: Container, port: number | string) => (typeof port === 'number' ? port : c.ports?.find((p) => p.name === port)?.containerPort);

/** The gateway config file as mounted: config path, mount dir and the files in it. */
function mountedConfig(objs: K8sObject[], s: Sidecar) {
  const configPath = envValue(s.gateway, 'PROMPTGATE_CONFIG')?.value;
  expect(configPath, 'PROMPTGATE_CONFIG is set on the sidecar').toBeDefined();
  const mount = (s.gateway.volumeMounts ?? []).find((m) => configPath!.startsWith(`${m.mountPath.replace(/\/$/, '')}/`));
  expect(mount, `a volume is mounted at the directory of ${configPath}`).toBeDefined();
  const volume = (s.pod.volumes ?? []).find((v) => v.name === mount!.name);
  expect(volume).toBeDefined();
  const configMaps = new Map(objs.filter((o) => o.kind === 'ConfigMap').map((o) => [o.metadata.name, o as K8sObject & { data?: Record<string, string> }]));
  // path inside the mount -> content, following items (or all keys when no items).
  const files = new Map<string, string>();
  const sources = volume!.projected ? volume!.projected.sources.map((x) => x.configMap).filter((x) => x !== undefined) : volume!.configMap ? [volume!.configMap] : [];
  for (const src of sources) {
    const cm = configMaps.get(src!.name);
    expect(cm, `ConfigMap ${src!.name} is part of the render`).toBeDefined();
    const data = cm!.data ?? {};
    const items = src!.items ?? Object.keys(data).map((key) => ({ key, path: key }));
    for (const it of items) {
      expect(data, `ConfigMap ${src!.name} has key ${it.key}`).toHaveProperty(it.key);
      files.set(it.path, data[it.key]);
    }
  }
  return { configPath: configPath!, mount: mount!, volume: volume!, files, sources: sources.map((x) => x!), configMaps };
}

describe.skipIf(!KUBECTL)(`deploy/kubernetes (${KUBECTL ?? 'kubectl missing'})`, () => {
  const tmp: string[] = [];
  afterAll(() => {
    for (const d of tmp) rmSync(d, { recursive: true, force: true });
  });

  it('has the expected kustomizations', () => {
    expect(DIRS).toEqual(expect.arrayContaining(['base', join('overlays', 'example'), 'plain-sidecar']));
  });

  describe.each(DIRS)('%s', (dir) => {
    it('renders with kubectl kustomize', () => {
      expect(render(dir).length).toBeGreaterThan(0);
    });

    it('every object validates against the Kubernetes schemas (no unknown fields)', async () => {
      const problems: string[] = [];
      for (const o of render(dir)) {
        for (const e of await validateObject(o)) problems.push(`${o.kind}/${o.metadata?.name}: ${e}`);
      }
      expect(problems).toEqual([]);
    });

    it('has a promptgate sidecar', () => {
      const s = sidecarsOf(render(dir));
      expect(s).toHaveLength(1);
      expect(s[0].app.length).toBeGreaterThan(0);
    });

    it('is a native sidecar, or (plain-sidecar) the first container with start/stop hooks', () => {
      for (const s of sidecarsOf(render(dir))) {
        if (dir === 'plain-sidecar') {
          expect(s.native).toBe(false);
          expect(s.pod.containers[0].name).toBe('promptgate');
          expect(s.gateway.restartPolicy).toBeUndefined();
          // postStart holds the app until /readyz answers; preStop keeps serving while the app stops.
          const post = s.gateway.lifecycle?.postStart?.exec?.command ?? [];
          expect(post.join(' ')).toContain('/readyz');
          expect(s.gateway.lifecycle?.preStop).toBeDefined();
        } else {
          expect(s.native).toBe(true);
          expect(s.gateway.restartPolicy).toBe('Always');
        }
      }
    });

    it('probes: startup and readiness on /readyz, liveness on /healthz, on the gateway port', () => {
      for (const s of sidecarsOf(render(dir))) {
        const g = s.gateway;
        const port = gatewayPort(g);
        expect(port?.containerPort).toBe(8080);
        for (const [probe, path] of [[g.startupProbe, '/readyz'], [g.readinessProbe, '/readyz'], [g.livenessProbe, '/healthz']] as const) {
          expect(probe?.httpGet?.path).toBe(path);
          expect(probePort(g, probe!.httpGet!.port)).toBe(8080);
        }
      }
    });

    it('meets Pod Security "restricted" in every container, with a writable /tmp only', () => {
      for (const s of sidecarsOf(render(dir))) {
        const podSc = s.pod.securityContext ?? {};
        const pod = s.pod as PodSpec & { hostNetwork?: boolean; hostPID?: boolean; hostIPC?: boolean };
        expect(pod.hostNetwork ?? false).toBe(false);
        expect(pod.hostPID ?? false).toBe(false);
        expect(pod.hostIPC ?? false).toBe(false);
        const allowedVolumes = ['configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'persistentVolumeClaim', 'projected', 'secret'];
        for (const v of s.pod.volumes ?? []) {
          expect(Object.keys(v).filter((k) => k !== 'name').every((k) => allowedVolumes.includes(k)), `volume ${v.name}`).toBe(true);
        }
        for (const c of allContainers(s.pod)) {
          const sc = (c.securityContext ?? {}) as {
            runAsNonRoot?: boolean; runAsUser?: number; allowPrivilegeEscalation?: boolean; privileged?: boolean;
            readOnlyRootFilesystem?: boolean; capabilities?: { drop?: string[]; add?: string[] }; seccompProfile?: { type?: string };
          };
          const name = `container ${c.name}`;
          expect(sc.runAsNonRoot, name).toBe(true);
          expect(sc.runAsUser, name).toBe(1000);
          expect(sc.allowPrivilegeEscalation, name).toBe(false);
          expect(sc.privileged ?? false, name).toBe(false);
          expect(sc.capabilities?.drop, name).toContain('ALL');
          expect((sc.capabilities?.add ?? []).filter((x) => x !== 'NET_BIND_SERVICE'), name).toEqual([]);
          const seccomp = sc.seccompProfile?.type ?? (podSc.seccompProfile as { type?: string } | undefined)?.type;
          expect(['RuntimeDefault', 'Localhost'], name).toContain(seccomp);
          expect(sc.seccompProfile?.type, `${name} sets seccompProfile itself`).toBe('RuntimeDefault');
          expect(sc.readOnlyRootFilesystem, name).toBe(true);
          const tmpMount = c.volumeMounts?.find((m) => m.mountPath === '/tmp');
          expect(tmpMount, `${name} mounts /tmp`).toBeDefined();
          expect(s.pod.volumes?.find((v) => v.name === tmpMount!.name)?.emptyDir, `${name} /tmp is an emptyDir`).toBeDefined();
        }
      }
    });

    it('sizes the sidecar from the measured peak RSS', () => {
      for (const s of sidecarsOf(render(dir))) {
        const r = s.gateway.resources ?? {};
        expect(r.requests?.cpu).toBeDefined();
        expect(r.requests?.memory).toBeDefined();
        const limit = memoryBytes(r.limits!.memory);
        expect(limit, 'memory limit >= 2x the 1000-stream peak RSS').toBeGreaterThanOrEqual(2 * PEAK_RSS_BYTES);
        expect(memoryBytes(r.requests!.memory)).toBeLessThanOrEqual(limit);
        // The V8 heap cap sits below the container limit.
        const heap = /--max-old-space-size=(\d+)/.exec(envValue(s.gateway, 'NODE_OPTIONS')?.value ?? '');
        if (heap) expect(Number(heap[1]) * 1024 * 1024).toBeLessThan(limit);
      }
    });

    it('the grace period outlasts preStop plus the drain timeout', () => {
      const objs = render(dir);
      for (const s of sidecarsOf(objs)) {
        const { configPath, mount, files } = mountedConfig(objs, s);
        const cfg = parseYaml(files.get(posix.relative(mount.mountPath, configPath))!) as { server?: { drain_timeout_ms?: number } };
        const drainMs = cfg.server?.drain_timeout_ms ?? DEFAULT_DRAIN_MS;
        const preStop = s.gateway.lifecycle?.preStop;
        const cmd = preStop?.exec?.command ?? [];
        const preStopMs = preStop?.sleep ? preStop.sleep.seconds * 1000 : cmd[0] === 'sleep' ? Number(cmd[1]) * 1000 : 0;
        expect(Number.isFinite(preStopMs)).toBe(true);
        const graceMs = (s.pod.terminationGracePeriodSeconds ?? 30) * 1000;
        expect(graceMs).toBeGreaterThan(preStopMs + drainMs);
      }
    });

    it('mounts config and templates as one directory (no subPath), with every template projected', () => {
      const objs = render(dir);
      for (const s of sidecarsOf(objs)) {
        const { configPath, mount, files, sources, configMaps } = mountedConfig(objs, s);
        expect(mount.subPath, 'subPath mounts never see ConfigMap updates').toBeUndefined();
        expect(mount.readOnly).toBe(true);
        const rel = posix.relative(mount.mountPath, configPath);
        expect(files.has(rel), `${rel} is in the mounted directory`).toBe(true);
        const cfg = parseYaml(files.get(rel)!) as { templates?: { dir?: string } };
        const tdir = posix.normalize(posix.join(posix.dirname(rel), cfg.templates?.dir ?? 'config/templates'));
        const templates = [...files.keys()].filter((p) => p.startsWith(`${tdir}/`));
        expect(templates.length, `templates under ${tdir}/`).toBeGreaterThan(0);
        // A ConfigMap projected into the templates dir must have every key projected there
        // (a key left out of `items` would silently be missing).
        for (const src of sources) {
          const data = configMaps.get(src.name)?.data ?? {};
          const projected = (src.items ?? []).filter((i) => i.path.startsWith(`${tdir}/`));
          if (projected.length === 0) continue;
          expect(projected.map((i) => i.key).sort(), `every key of ${src.name} is projected into ${tdir}/`).toEqual(Object.keys(data).sort());
          for (const i of projected) expect(i.path).toBe(`${tdir}/${i.key}`);
        }
      }
    });

    it('the mounted gateway config passes `promptgate check`', () => {
      const objs = render(dir);
      for (const s of sidecarsOf(objs)) {
        const { configPath, mount, files } = mountedConfig(objs, s);
        const root = mkdtempSync(join(tmpdir(), 'promptgate-k8s-config-'));
        tmp.push(root);
        for (const [p, content] of files) {
          mkdirSync(dirname(join(root, p)), { recursive: true });
          writeFileSync(join(root, p), content);
        }
        const file = join(root, posix.relative(mount.mountPath, configPath));
        const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'main.ts'), 'check', '--config', file], {
          cwd: ROOT,
          encoding: 'utf8',
          env: { PATH: process.env.PATH, HOME: process.env.HOME, OPENAI_API_KEY: 'sk-test' },
          timeout: 60_000,
        });
        expect(`${r.stdout}${r.stderr}`, `exit ${r.status}`).toMatch(/OK/);
        expect(r.status).toBe(0);
      }
    });

    it('wires the API key Secret, OpenTelemetry and the app base URL', () => {
      const objs = render(dir);
      const secrets = new Map(objs.filter((o) => o.kind === 'Secret').map((o) => [o.metadata.name, o as K8sObject & { data?: Record<string, string>; stringData?: Record<string, string> }]));
      for (const s of sidecarsOf(objs)) {
        const key = envValue(s.gateway, 'OPENAI_API_KEY')?.valueFrom?.secretKeyRef as { name: string; key: string } | undefined;
        expect(key, 'OPENAI_API_KEY comes from a Secret').toBeDefined();
        const secret = secrets.get(key!.name);
        expect(secret, `Secret ${key!.name} is part of the render`).toBeDefined();
        expect({ ...secret!.data, ...secret!.stringData }).toHaveProperty(key!.key);
        expect(envValue(s.gateway, 'OTEL_EXPORTER_OTLP_ENDPOINT')?.value).toBe('http://jaeger-collector.observability:4318');
        expect(envValue(s.gateway, 'OTEL_SERVICE_NAME')?.value).toBeDefined();
        for (const app of s.app) expect(envValue(app, 'OPENAI_BASE_URL')?.value).toBe('http://127.0.0.1:8080/v1');
        // The sidecar itself must not inherit the app's base URL (it would call itself).
        expect(envValue(s.gateway, 'OPENAI_BASE_URL')?.value ?? '').not.toMatch(/127\.0\.0\.1|localhost/);
      }
    });

    it('env $(VAR) references point at variables defined earlier in the same container', () => {
      for (const s of sidecarsOf(render(dir))) {
        for (const c of allContainers(s.pod)) {
          const defined = new Set<string>();
          for (const e of c.env ?? []) {
            for (const m of (e.value ?? '').matchAll(/(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g)) {
              expect(defined.has(m[1]), `${c.name}: ${e.name} uses $(${m[1]}) before it is defined`).toBe(true);
            }
            defined.add(e.name);
          }
        }
      }
    });

    it('inline node scripts in hooks parse', () => {
      for (const s of sidecarsOf(render(dir))) {
        for (const c of allContainers(s.pod)) {
          for (const h of [c.lifecycle?.postStart, c.lifecycle?.preStop]) {
            const cmd = h?.exec?.command ?? [];
            if (cmd[0] === 'node' && cmd[1] === '-e') expect(() => new Script(cmd[2])).not.toThrow();
          }
        }
      }
    });

    it('annotates the pod for Prometheus scraping of the sidecar port', () => {
      for (const s of sidecarsOf(render(dir))) {
        const tpl = (s.deployment.spec as { template: { metadata: { annotations?: Record<string, string>; labels?: Record<string, string> } } }).template;
        const a = tpl.metadata.annotations ?? {};
        expect(a['prometheus.io/scrape']).toBe('true');
        expect(Number(a['prometheus.io/port'])).toBe(gatewayPort(s.gateway)?.containerPort);
        expect(a['prometheus.io/path']).toBe('/metrics');
        expect(tpl.metadata.labels?.['promptgate.dev/sidecar']).toBe('true');
      }
    });
  });

  it('the example overlay sets a namespace with Pod Security "restricted" enforced and pins images', () => {
    const objs = render(join('overlays', 'example'));
    const ns = objs.find((o) => o.kind === 'Namespace');
    expect(ns?.metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('restricted');
    for (const o of objs) if (o.kind !== 'Namespace') expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe(ns!.metadata.name);
    for (const s of sidecarsOf(objs)) {
      for (const c of allContainers(s.pod)) expect(c.image, c.name).toMatch(/^[^:@\s]+(:(?!latest$)[\w.-]+|@sha256:[0-9a-f]{64})$/);
    }
  });

  it('extras/ manifests validate, and the PodMonitor selects the sidecar pods and port', async () => {
    const extras = join(K8S, 'extras');
    const objs = readdirSync(extras).filter((f) => /\.ya?ml$/.test(f)).flatMap((f) => parseManifests(readFileSync(join(extras, f), 'utf8')));
    expect(objs.length).toBeGreaterThan(0);
    for (const o of objs) expect(await validateObject(o), `${o.kind}/${o.metadata.name}`).toEqual([]);
    const pm = objs.find((o) => o.kind === 'PodMonitor');
    expect(pm).toBeDefined();
    const spec = pm!.spec as { selector: { matchLabels: Record<string, string> }; podMetricsEndpoints: { port: string; path?: string }[] };
    const s = sidecarsOf(render('base'))[0];
    const labels = (s.deployment.spec as { template: { metadata: { labels: Record<string, string> } } }).template.metadata.labels;
    for (const [k, v] of Object.entries(spec.selector.matchLabels)) expect(labels[k], `pod label ${k}`).toBe(v);
    expect(s.gateway.ports?.map((p) => p.name)).toContain(spec.podMetricsEndpoints[0].port);
    expect(spec.podMetricsEndpoints[0].path ?? '/metrics').toBe('/metrics');
  });

  it('the PodMonitor names its targets\' job as the rules\' PromptgateSidecarDown alert expects (was: the Operator\'s "<namespace>/promptgate", so the alert never fired)', () => {
    const rules = readFileSync(join(ROOT, 'deploy', 'prometheus', 'rules.yaml'), 'utf8');
    const job = /up\{job="([^"]+)"\}/.exec(rules)?.[1];
    expect(job).toBeDefined();
    const pm = parseManifests(readFileSync(join(K8S, 'extras', 'podmonitor.yaml'), 'utf8')).find((o) => o.kind === 'PodMonitor')!;
    const endpoint = (pm.spec as { podMetricsEndpoints: { relabelings?: { sourceLabels?: string[]; targetLabel?: string; replacement?: string; action?: string }[] }[] }).podMetricsEndpoints[0];
    // The Operator sets job to "<namespace>/<PodMonitor name>" (or spec.jobLabel's pod label) before the endpoint's relabelings run.
    const setsJob = (endpoint.relabelings ?? []).filter((r) => r.targetLabel === 'job' && (r.action ?? 'replace') === 'replace' && !r.sourceLabels?.length);
    expect(setsJob.map((r) => r.replacement)).toEqual([job]);
  });

  it('the validator itself rejects schema errors and unknown fields', async () => {
    const bad: K8sObject = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'x' },
      spec: { selector: {}, template: { spec: { containers: [{ name: 'a', image: 'x', ports: [{ containerPort: '80' }], securityContxt: {} }] } } },
    };
    const errors = await validateObject(bad);
    expect(errors.join('\n')).toMatch(/containerPort must be integer/);
    expect(errors.join('\n')).toMatch(/unknown field \/spec\/template\/spec\/containers\/0\/securityContxt/);
    await expect(validateObject({ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } })).rejects.toThrow(/unknown/);
  });
});
