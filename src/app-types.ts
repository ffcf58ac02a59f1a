/**
 * Types shared by the app and its route handlers.
 */
import type { HttpBindings } from '@hono/node-server';
import type { ContextRuntime } from './context/runtime.js';
import type { FeedbackLedger } from './admin/feedback.js';
import type { AssignmentCounters } from './experiments/counters.js';
import type { Metrics } from './telemetry/metrics.js';
import type { RuntimeHolder } from './runtime.js';
import type { Exchange } from './proxy/exchange.js';
import type { RoutedObjects } from './proxy/model-route.js';
import type { Logger as StructuredLogger } from './telemetry/logger.js';
import type { RequestRecord } from './telemetry/types.js';

/**
 * What the app logs with: the four levels of the structured logger (telemetry/logger.ts),
 * so a test can pass a plain object. Fields never carry bodies or keys.
 */
export type Logger = Pick<StructuredLogger, 'debug' | 'info' | 'warn' | 'error'>;

/** Process-wide state the app reads: is it draining? and which exchanges are in flight. */
export interface Lifecycle {
  draining: boolean;
  /**
   * The `/v1` exchanges in flight (each adds itself when it opens and leaves when it
   * finishes); the shutdown ends those still open when the drain time is up. Absent where
   * nothing shuts down (tests that call `app.request()`).
   */
  readonly exchanges?: Set<Exchange>;
}

export interface GatewayDeps {
  holder: RuntimeHolder;
  lifecycle: Lifecycle;
  logger: Logger;
  /** Assignment counts per experiment and variant (outlive config reloads). */
  counters: AssignmentCounters;
  /** Called once per finished request (metrics, request log, experiment statistics). */
  onRequestDone: (record: RequestRecord) => void;
  /** Prometheus exposition, when metrics are on. */
  metrics?: Pick<Metrics, 'contentType' | 'render' | 'observeExperiment'>;
  /** Recent requests' assignments, for POST /v1/feedback. */
  feedback?: FeedbackLedger;
  /** Context caches and recipe bandits (outlive config reloads); made on first use when absent. */
  context?: ContextRuntime;
  /** This gateway's entry in `via` (proxy/headers.ts `viaEntry`): one per app, to see a request come back. */
  via: string;
  /** Stored objects made on a routed model, for the calls that follow on them (proxy/model-route.ts). */
  routedObjects: RoutedObjects;
}

/** Hono env: Node bindings (absent under `app.request()`), and per-request variables. */
export interface AppEnv {
  Bindings: Partial<HttpBindings>;
  Variables: { exchange?: Exchange };
}
