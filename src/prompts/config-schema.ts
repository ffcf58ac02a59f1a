/**
 * Config schema of `identity:`, `templates:` and `bindings:` (`experiments:` is in
 * experiments/config-schema.ts). Checks that need the template registry (a binding's
 * template exists) are in `prompts/bindings.ts`.
 */
import { z } from 'zod';

/** Ids and names that end up in headers, metric labels and URLs. */
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
export const name = z.string().regex(NAME_PATTERN, 'expected letters, digits, ".", "_" or "-", starting with a letter or digit');

export const identitySchema = z.strictObject({
  /** Where the user id comes from, first match wins: body.<field> or header.<name>. */
  user_id_from: z
    .array(z.string().regex(/^(body|header)\.[A-Za-z0-9_.-]+$/, 'expected body.<field> or header.<name>'))
    .default(['body.user', 'body.safety_identifier', 'header.x-user-id']),
});

export const templatesSchema = z.strictObject({
  /** Directory of template files, relative to the config file. */
  dir: z.string().default('config/templates'),
});

export const bindingSchema = z
  .strictObject({
    /** The model alias clients send. */
    model: z.string().min(1),
    /** Experiment whose assigned variant is served (exclusive with `template`). */
    experiment: z.string().min(1).optional(),
    /** `id`, `id@version` or `id@label` when no experiment is bound. */
    template: z.string().min(1).optional(),
    /** `replace`: template messages replace the client's system/developer messages; `prepend`: go before them. */
    mode: z.enum(['replace', 'prepend']).default('replace'),
    /** Upstream model; overrides the template version's model. */
    upstream_model: z.string().min(1).optional(),
  })
  .superRefine((b, ctx) => {
    if ((b.experiment === undefined) === (b.template === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'expected exactly one of experiment or template', path: [] });
    }
  });

export type BindingConfig = z.infer<typeof bindingSchema>;
