/**
 * Prompt and completion in the OTel GenAI semantic conventions' message format, for
 * `gen_ai.input.messages` / `gen_ai.output.messages` (recorded only with
 * `telemetry.capture_content: true`): OpenAI chat messages become `{role, parts}` with
 * text, tool-call and tool-response parts.
 */

type Part = Record<string, unknown>;

/** OpenAI chat messages -> OTel GenAI input messages (`{role, parts}`); non-text parts are left out. */
export function inputMessages(messages: unknown): Array<{ role: string; parts: Part[]; name?: string }> {
  if (!Array.isArray(messages)) return [];
  const out: Array<{ role: string; parts: Part[]; name?: string }> = [];
  for (const m of messages) {
    if (typeof m !== 'object' || m === null) continue;
    const msg = m as Record<string, unknown>;
    const role = typeof msg.role === 'string' ? msg.role : 'user';
    const parts: Part[] = [];
    if (role === 'tool') {
      parts.push({ type: 'tool_call_response', id: msg.tool_call_id, response: textOf(msg.content) });
    } else {
      const text = textOf(msg.content);
      if (text) parts.push({ type: 'text', content: text });
      if (Array.isArray(msg.tool_calls)) {
        for (const call of msg.tool_calls as Array<Record<string, unknown>>) {
          const fn = (call?.function ?? {}) as Record<string, unknown>;
          parts.push({ type: 'tool_call', id: call?.id, name: fn.name, arguments: parseArguments(fn.arguments) });
        }
      }
    }
    out.push(typeof msg.name === 'string' ? { role, parts, name: msg.name } : { role, parts });
  }
  return out;
}

/** The assistant text -> OTel GenAI output messages. */
export function outputMessages(completion: string, finishReason: string | undefined): Array<Record<string, unknown>> {
  return [{ role: 'assistant', parts: [{ type: 'text', content: completion }], finish_reason: finishReason ?? 'stop' }];
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((p) => (typeof p === 'object' && p !== null && typeof (p as Part).text === 'string' ? ((p as Part).text as string) : ''))
    .filter(Boolean)
    .join('\n');
}

function parseArguments(args: unknown): unknown {
  if (typeof args !== 'string') return args;
  try {
    return JSON.parse(args);
  } catch {
    return args;
  }
}
