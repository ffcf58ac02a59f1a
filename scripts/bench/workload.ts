/**
 * The requests every target gets: one small chat completion, non-streaming or streaming,
 * for the model alias `support-bot`, which the bench config binds to an experiment (the
 * gateway selects a variant and renders its template; the mock ignores the model).
 * The streaming request does not ask for `stream_options.include_usage` (the openai SDK's
 * default), so the gateway does its full accounting work: it adds include_usage upstream
 * and strips the usage chunk and the `"usage":null` fields from what the client sees.
 */
export const CHAT_PATH = '/v1/chat/completions';

const messages = [
  { role: 'system', content: 'You are a concise assistant for an online bookshop. Answer in two sentences at most.' },
  { role: 'user', content: 'Do you ship to Canada, and how long does delivery usually take for paperbacks?' },
];

const common = { model: 'support-bot', messages, temperature: 0.2, user: 'bench-user-1', prompt_variables: { customer_name: 'Ada', product: 'paperbacks' } };
export const NON_STREAM_BODY = JSON.stringify(common);
export const STREAM_BODY = JSON.stringify({ ...common, stream: true });

export const HEADERS: Record<string, string> = {
  'content-type': 'application/json',
  authorization: 'Bearer sk-client-bench',
};

export type Mode = 'non-stream' | 'stream';

export function bodyFor(mode: Mode): string {
  return mode === 'stream' ? STREAM_BODY : NON_STREAM_BODY;
}
