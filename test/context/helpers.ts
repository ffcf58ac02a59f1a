/**
 * Context test helpers: a real JSON service on port 0 steered per path, and a compiled
 * context (builders + one template version's plan) from plain config objects, as the config
 * loader would build it.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileContext, type CompiledContext, type ContextPlan } from '../../src/context/compile.js';
import { contextConfigSchema } from '../../src/context/config-schema.js';
import { compileTemplate } from '../../src/prompts/compile-template.js';
import { TemplateRegistry, type TemplateVersion } from '../../src/prompts/registry.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface ServiceRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: unknown;
}

export type Handler = (req: ServiceRequest, res: ServerResponse) => void | Promise<void>;

export interface JsonService {
  url: string;
  requests: ServiceRequest[];
  /** Requests by path (query excluded). */
  count(path: string): number;
  /** Replaces the handler of a path (`GET /customers/1` style keys are not used: paths only). */
  route(path: string | RegExp, handler: Handler): void;
  close(): Promise<void>;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Answers `json` with status 200. */
export const json =
  (body: unknown, opts: { status?: number; delayMs?: number } = {}): Handler =>
  async (_req, res) => {
    if (opts.delayMs) await sleep(opts.delayMs);
    if (res.destroyed) return;
    res.writeHead(opts.status ?? 200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };

export async function startJsonService(): Promise<JsonService> {
  const routes: Array<[string | RegExp, Handler]> = [];
  const requests: ServiceRequest[] = [];
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const r: ServiceRequest = { method: req.method!, url: req.url!, headers: req.headers, body: raw ? JSON.parse(raw) : undefined };
    requests.push(r);
    const p = req.url!.split('?')[0];
    const found = [...routes].reverse().find(([k]) => (typeof k === 'string' ? k === p : k.test(p)));
    if (!found) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end('{"error":"not found"}');
      return;
    }
    try {
      await found[1](r, res);
    } catch {
      res.destroy();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    requests,
    count: (p) => requests.filter((r) => r.url.split('?')[0] === p).length,
    route: (p, h) => void routes.push([p, h]),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export interface TestContext {
  compiled: CompiledContext;
  plan: ContextPlan;
  version: TemplateVersion;
}

/**
 * Compiles `context` (the gateway config section) and a template version using it.
 * `templateContext` is the version's `context:`; `messages` its messages.
 */
export function makeContext(
  context: Record<string, unknown>,
  templateContext: Record<string, unknown>,
  options: { messages?: Array<{ role: string; content: string }>; constraints?: Record<string, unknown>; variables?: Record<string, unknown>; baseDir?: string } = {},
): TestContext {
  const { template, problems } = compileTemplate({
    id: 't',
    versions: [
      {
        version: '1.0.0',
        constraints: options.constraints ?? {},
        variables: options.variables ?? {},
        context: templateContext,
        messages: options.messages ?? [{ role: 'system', content: 'ctx' }],
      },
    ],
  });
  if (!template) throw new Error(`template problems: ${JSON.stringify(problems)}`);
  const registry = new TemplateRegistry([template]);
  const { compiled, issues } = compileContext(contextConfigSchema.parse(context), registry, options.baseDir ?? ROOT);
  if (issues.length > 0) throw new Error(`context issues: ${JSON.stringify(issues)}`);
  const version = template.versions[0];
  return { compiled, plan: compiled.plans.get(version.ref)!, version };
}

/** A deterministic uniform RNG (mulberry32). */
export { seededRandom } from '../../scripts/seeded-random.js';
