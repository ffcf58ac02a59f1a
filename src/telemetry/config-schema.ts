/** Config schema of `telemetry:` and `pricing:`. */
import { z } from 'zod';

export const telemetrySchema = z.strictObject({
  /** `service.name` of spans; `OTEL_SERVICE_NAME` wins when set. */
  service_name: z.string().min(1).default('promptgate'),
  /** Record prompt and completion text on spans. Off by default: content is user data. */
  capture_content: z.boolean().default(false),
  /**
   * Distinct values kept per free-form metric label (model, template, ...) before further
   * values collapse to `other`. Models named in the price book or the config never collapse.
   */
  max_label_values: z.number().int().min(1).max(10_000).default(50),
});

/**
 * USD per 1M tokens. `cached_input` and `reasoning` default to `input` and `output`; audio
 * tokens have no default: a request with audio tokens at a price without `audio_input` /
 * `audio_output` has unknown cost.
 */
const tokenPrices = {
  input: z.number().nonnegative(),
  cached_input: z.number().nonnegative().optional(),
  output: z.number().nonnegative(),
  reasoning: z.number().nonnegative().optional(),
  audio_input: z.number().nonnegative().optional(),
  audio_output: z.number().nonnegative().optional(),
};

/**
 * The standard prices, and those of the service tiers billed otherwise: an answer with
 * `service_tier: "flex"` or `"priority"` is priced at `flex` / `priority`, and has unknown
 * cost when the entry has none (any other tier is priced at the standard prices).
 */
export const priceSchema = z.strictObject({
  ...tokenPrices,
  flex: z.strictObject(tokenPrices).optional(),
  priority: z.strictObject(tokenPrices).optional(),
});

/**
 * Model name (or dated-snapshot prefix) -> price; merged over the shipped defaults, an entry
 * replacing the default entry of the same name as a whole.
 */
export const pricingSchema = z.record(z.string().trim().min(1, 'expected a model name'), priceSchema);

export type TelemetryConfig = z.infer<typeof telemetrySchema>;
export type ModelPrice = z.infer<typeof priceSchema>;
export type PricingConfig = z.infer<typeof pricingSchema>;
