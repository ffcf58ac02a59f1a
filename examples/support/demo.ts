/**
 * `npm run demo`: customer support with context injection, offline.
 *
 * Starts the demo customer service on 127.0.0.1, then the gateway with
 * examples/support/gateway.demo.yaml on the embedded simulator, and prints requests to try.
 * Each request to `"model": "support-bot"` gets the support-context template with the
 * customer's profile (http builder, cached), the rules of their tier, help-centre passages
 * (BM25 over config/knowledge) and the conversation so far.
 *
 * Environment: PORT (gateway, default 8080), SUPPORT_API_PORT (customer service, default
 * 8091; 0 = any free port).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startGateway, type RunningGateway } from '../../src/server.js';
import { startCustomerService, type CustomerService } from './customer-service.js';

export const DEMO_CONFIG = path.join(path.dirname(fileURLToPath(import.meta.url)), 'gateway.demo.yaml');
const DEMO_TOKEN = 'demo-token';

export interface Demo {
  gateway: RunningGateway;
  customers: CustomerService;
  url: string;
  close(): Promise<void>;
}

export interface DemoOptions {
  /** Gateway port (0 = any); default PORT or the config's 8080. */
  port?: number;
  /** Customer service port (0 = any); default SUPPORT_API_PORT or 8091. */
  customerPort?: number;
  handleSignals?: boolean;
}

/** Starts the customer service, then the gateway pointed at it. */
export async function startDemo(options: DemoOptions = {}): Promise<Demo> {
  const customerPort = options.customerPort ?? Number(process.env.SUPPORT_API_PORT ?? 8091);
  const customers = await startCustomerService({ port: customerPort, token: DEMO_TOKEN });
  // The demo config reads these through ${SUPPORT_API_URL} / ${SUPPORT_API_TOKEN}.
  process.env.SUPPORT_API_URL = customers.url;
  process.env.SUPPORT_API_TOKEN = DEMO_TOKEN;
  let gateway: RunningGateway;
  try {
    gateway = await startGateway({ file: DEMO_CONFIG, port: options.port, handleSignals: options.handleSignals });
  } catch (err) {
    await customers.close();
    throw err;
  }
  return {
    gateway,
    customers,
    url: `http://127.0.0.1:${gateway.port}`,
    close: async () => {
      await gateway.shutdown('demo');
      await customers.close();
    },
  };
}

function usage(url: string, customers: string): string {
  const body = (user: string, question: string) =>
    JSON.stringify({ model: 'support-bot', user, messages: [{ role: 'user', content: question }] });
  return `
promptgate demo
  gateway           ${url}/v1   (OpenAI-compatible; answers come from the embedded simulator)
  customer service  ${customers}/customers/user-alice   (user-alice: gold, user-bob: silver, user-carol: standard)
  metrics           ${url}/metrics   (promptgate_context_* families)

Try (the gateway renders config/templates/support-context.yaml with the customer's context):

  curl -s ${url}/v1/chat/completions -H 'content-type: application/json' \\
    -d '${body('user-alice', 'My parcel has not moved for a week. Can I get a refund to my card?')}'

  curl -s ${url}/v1/chat/completions -H 'content-type: application/json' \\
    -d '${body('user-nobody', 'How long do returns take?')}'     # unknown customer: goes out without a profile

With the openai package (Node):

  import OpenAI from 'openai';
  const client = new OpenAI({ baseURL: '${url}/v1', apiKey: 'unused' });
  const r = await client.chat.completions.create({ model: 'support-bot', user: 'user-bob', messages: [{ role: 'user', content: 'How do I reset my password?' }] });
  console.log(r.choices[0].message.content);

Watch the cache work:  curl -s ${url}/metrics | grep promptgate_context_cache   (hits and misses, entries, bytes)
To see the rendered prompt, run with OTEL_EXPORTER_OTLP_ENDPOINT set and telemetry.capture_content: true.
Ctrl-C stops both.
`;
}

const isMain = process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  // No port option: the gateway reads PORT itself, strictly (an invalid PORT is an error naming it).
  startDemo().then(
    (demo) => {
      process.stdout.write(usage(demo.url, demo.customers.url));
      // startGateway handles SIGINT/SIGTERM (drain, then exit); the customer service dies with the process.
    },
    (err) => {
      console.error(`demo failed to start: ${err instanceof Error ? err.message : String(err)}`);
      process.exit(1);
    },
  );
}
