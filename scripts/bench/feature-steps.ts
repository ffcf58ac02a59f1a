/**
 * What each feature costs: the bench config taken apart into steps, each switching on one
 * more part of the pipeline, so BENCHMARKS.md shows CPU per request feature by feature.
 * The last step is the bench config itself (every feature, traces exported), measured by
 * the main throughput runs.
 *
 * The step configs are written to a temporary directory, with the config's relative paths
 * (templates, knowledge) made absolute so they still point where the bench config does.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse, stringify } from 'yaml';

export interface FeatureStep {
  /** What the step is called in the table. */
  name: string;
  /** What it switches on, in a few words. */
  adds: string;
  /** Config file to start the gateway with. */
  config: string;
  /** Export spans over OTLP/HTTP to the mock. */
  tracing: boolean;
}

type Config = Record<string, any>;

const GUARD_OFF = { injection: { action: 'off' } };

/**
 * @example
 * featureSteps('/work/main', 'scripts/bench/gateway.bench.yaml')
 * // [{ name: 'proxy + prompt selection', config: '/tmp/…/proxy.yaml', tracing: false }, …, { name: '+ trace export', config: 'scripts/bench/gateway.bench.yaml', tracing: true }]
 */
export function featureSteps(root: string, benchConfig: string): FeatureStep[] {
  const file = path.resolve(root, benchConfig);
  const base = path.dirname(file);
  const full = parse(readFileSync(file, 'utf8')) as Config;
  if (full.templates?.dir) full.templates.dir = path.resolve(base, full.templates.dir);
  for (const b of full.context?.builders ?? []) if (typeof b.dir === 'string') b.dir = path.resolve(base, b.dir);

  const dir = mkdtempSync(path.join(os.tmpdir(), 'promptgate-bench-steps-'));
  const variant = (name: string, edit: (c: Config) => void): string => {
    const c = structuredClone(full);
    edit(c);
    const out = path.join(dir, `${name}.yaml`);
    writeFileSync(out, stringify(c));
    return out;
  };

  return [
    {
      name: 'proxy + prompt selection',
      adds: 'routing, experiment assignment, template render, usage and cost, metrics',
      config: variant('proxy', (c) => {
        delete c.context;
        c.guard = GUARD_OFF;
      }),
      tracing: false,
    },
    {
      name: '+ context',
      adds: 'tier rules, knowledge retrieval (cache warm), history, token budget',
      config: variant('context', (c) => {
        c.guard = GUARD_OFF;
      }),
      tracing: false,
    },
    {
      name: '+ injection guard',
      adds: 'user messages and context passages scanned',
      config: variant('guard', () => undefined),
      tracing: false,
    },
    {
      name: '+ trace export',
      adds: 'SERVER, CLIENT and context spans for every request, OTLP/HTTP protobuf',
      config: benchConfig,
      tracing: true,
    },
  ];
}
