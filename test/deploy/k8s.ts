/**
 * Kubernetes helpers for the deploy tests: render a kustomization with `kubectl kustomize`
 * and validate objects offline against the OpenAPI schemas shipped by kubernetes-models,
 * plus a strict unknown-field check (the generated validators ignore unknown fields; the
 * API server's strict field validation, `kubectl apply`'s default, would reject them).
 */
import { spawnSync } from 'node:child_process';
import { parseAllDocuments } from 'yaml';

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

export function kubectlVersion(): string | undefined {
  const r = spawnSync('kubectl', ['version', '--client', '--output=json'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return undefined;
  try {
    const v = JSON.parse(r.stdout) as { clientVersion?: { gitVersion?: string }; kustomizeVersion?: string };
    return `kubectl ${v.clientVersion?.gitVersion ?? '?'}, kustomize ${v.kustomizeVersion ?? '?'}`;
  } catch {
    return r.stdout.trim();
  }
}

export function kustomize(dir: string): K8sObject[] {
  const r = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`kubectl kustomize ${dir} failed:\n${r.stderr}`);
  return parseManifests(r.stdout);
}

export function parseManifests(text: string): K8sObject[] {
  const docs = parseAllDocuments(text);
  const out: K8sObject[] = [];
  for (const d of docs) {
    if (d.errors.length > 0) throw new Error(d.errors.map((e) => e.message).join('\n'));
    const v = d.toJS() as K8sObject | null;
    if (v) out.push(v);
  }
  return out;
}

/** Kinds not in kubernetes-models (CRDs) that the deploy files may contain on purpose. */
export const CRD_KINDS: Record<string, (o: K8sObject) => string[]> = {
  'monitoring.coreos.com/v1/PodMonitor': (o) => {
    const spec = o.spec as { selector?: unknown; podMetricsEndpoints?: { port?: string }[] } | undefined;
    const errs: string[] = [];
    if (!spec?.selector) errs.push('spec.selector missing');
    if (!spec?.podMetricsEndpoints?.length) errs.push('spec.podMetricsEndpoints missing');
    for (const e of spec?.podMetricsEndpoints ?? []) if (!e.port) errs.push('podMetricsEndpoints[].port missing');
    return errs;
  },
  'monitoring.coreos.com/v1/ServiceMonitor': (o) => {
    const spec = o.spec as { selector?: unknown; endpoints?: unknown[] } | undefined;
    return !spec?.selector || !spec?.endpoints?.length ? ['spec.selector and spec.endpoints are required'] : [];
  },
};

/**
 * Validates one object: schema errors and unknown fields, as messages (empty = valid).
 * Throws for a kind that neither kubernetes-models nor CRD_KINDS knows.
 */
export async function validateObject(obj: K8sObject): Promise<string[]> {
  const crd = CRD_KINDS[`${obj.apiVersion}/${obj.kind}`];
  if (crd) return crd(obj);
  let mod: Record<string, unknown>;
  try {
    const specifier = `kubernetes-models/${obj.apiVersion}`;
    mod = (await import(/* @vite-ignore */ specifier)) as Record<string, unknown>;
  } catch {
    throw new Error(`unknown apiVersion ${obj.apiVersion} (kind ${obj.kind})`);
  }
  const Model = mod[obj.kind] as { prototype: { validate(this: unknown): void } } | undefined;
  if (!Model) throw new Error(`unknown kind ${obj.apiVersion}/${obj.kind}`);

  // Run the generated validator on a proxy that records which keys it reads: any key of
  // an object that the validator never looked at is not in the schema.
  const seen = new Map<object, { path: string; keys: Set<string>; enumerated: boolean }>();
  const wrap = (v: unknown, path: string): unknown => {
    if (v === null || typeof v !== 'object') return v;
    const rec = { path, keys: new Set<string>(), enumerated: false };
    seen.set(v, rec);
    const cache = new Map<string, unknown>();
    return new Proxy(v, {
      get(t, k) {
        const value = Reflect.get(t, k);
        if (typeof k !== 'string') return value;
        rec.keys.add(k);
        if (!cache.has(k)) cache.set(k, wrap(value, `${path}/${k}`));
        return cache.get(k);
      },
      has(t, k) {
        if (typeof k === 'string') rec.keys.add(k);
        return Reflect.has(t, k);
      },
      ownKeys(t) {
        rec.enumerated = true; // maps (labels, data, limits...) are iterated: any key is fine
        return Reflect.ownKeys(t);
      },
    });
  };
  const errors: string[] = [];
  try {
    Model.prototype.validate.call(wrap(obj, ''));
  } catch (e) {
    errors.push((e as Error).message);
  }
  for (const [target, rec] of seen) {
    if (Array.isArray(target) || rec.enumerated) continue;
    for (const k of Object.keys(target)) if (!rec.keys.has(k)) errors.push(`unknown field ${rec.path}/${k}`);
  }
  return errors;
}

// ---------------------------------------------------------------------------
// Pod spec accessors

export interface Container {
  name: string;
  image?: string;
  restartPolicy?: string;
  env?: { name: string; value?: string; valueFrom?: Record<string, unknown> }[];
  ports?: { name?: string; containerPort: number }[];
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: Record<string, unknown>;
  volumeMounts?: { name: string; mountPath: string; subPath?: string; readOnly?: boolean }[];
  startupProbe?: Probe;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  lifecycle?: { postStart?: Handler; preStop?: Handler };
}
export interface Probe {
  httpGet?: { path: string; port: number | string };
  periodSeconds?: number;
  failureThreshold?: number;
}
export interface Handler {
  exec?: { command: string[] };
  sleep?: { seconds: number };
}
export interface PodSpec {
  initContainers?: Container[];
  containers: Container[];
  terminationGracePeriodSeconds?: number;
  securityContext?: Record<string, unknown>;
  volumes?: {
    name: string;
    emptyDir?: unknown;
    configMap?: { name: string; items?: { key: string; path: string }[] };
    projected?: { sources: { configMap?: { name: string; items?: { key: string; path: string }[] }; secret?: unknown }[] };
  }[];
}

export function podSpecOf(obj: K8sObject): PodSpec | undefined {
  const spec = obj.spec as { template?: { spec?: PodSpec } } | undefined;
  return spec?.template?.spec;
}

export function allContainers(pod: PodSpec): Container[] {
  return [...(pod.initContainers ?? []), ...pod.containers];
}

/** Converts a Kubernetes memory quantity to bytes. */
export function memoryBytes(q: string): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q);
  if (!m) throw new Error(`bad quantity ${q}`);
  const mult: Record<string, number> = { '': 1, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };
  return Number(m[1]) * mult[m[2] ?? ''];
}
