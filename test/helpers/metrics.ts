/**
 * Reads a running gateway's `GET /metrics` for assertions (see telemetry-e2e/prom-text.ts for
 * the parsed form).
 */
import { request } from 'undici';
import { PromText } from '../telemetry-e2e/prom-text.js';

/** The gateway's `GET /metrics` exposition as text; throws unless it answers 200. */
export async function scrapeMetricsText(gatewayUrl: string): Promise<string> {
  const res = await request(`${gatewayUrl}/metrics`);
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`GET /metrics answered ${res.statusCode}: ${text.slice(0, 200)}`);
  return text;
}

/** The gateway's `GET /metrics`, parsed; throws unless it answers 200. */
export async function scrapeMetrics(gatewayUrl: string): Promise<PromText> {
  return new PromText(await scrapeMetricsText(gatewayUrl));
}
