/**
 * Feedback metric names: what `POST /v1/feedback` takes as `metric` (`thumbs_up`), recorded
 * as `feedback.<name>`. Configs that name a feedback metric (an experiment's `metrics`, a
 * recipe bandit's `metric`) are held to the same rule, so none waits for feedback that no
 * client can send.
 */
const NAME = '[a-z][a-z0-9_]{0,63}';

/** A feedback name as a client sends it. */
export const FEEDBACK_NAME = new RegExp(`^${NAME}$`);

/** A feedback metric as a config names it: `feedback.<name>`. */
export const FEEDBACK_METRIC = new RegExp(`^feedback\\.${NAME}$`);

/** What a config's error says a feedback metric must look like. */
export const FEEDBACK_METRIC_RULE = 'feedback.<name>, the name in lower case (a-z, 0-9, _) as POST /v1/feedback takes it';
