/**
 * The calls in an OpenAI chat message (or stream delta): the legacy `function_call` first,
 * then `tool_calls`, each a function's name and `arguments` or a `custom` tool call's name
 * and `input`. One reader for everything that counts, estimates or captures them (the
 * context budget, the usage estimate, the stream text, content capture).
 */

/** One call: a function's `arguments`, or a custom tool call's `input`, as `arguments`. */
export interface MessageCall {
  id?: string;
  name?: string;
  arguments: string;
}

const NO_CALLS: readonly MessageCall[] = Object.freeze([]);

/**
 * The calls of `message`, in order; a shared empty list when it has none (this runs per
 * message and per stream delta).
 *
 * @example
 * messageCalls({ role: 'assistant', tool_calls: [{ id: 'c1', function: { name: 'f', arguments: '{}' } }] })
 * // [{ id: 'c1', name: 'f', arguments: '{}' }]
 */
export function messageCalls(message: unknown): readonly MessageCall[] {
  if (typeof message !== 'object' || message === null) return NO_CALLS;
  const { function_call: legacy, tool_calls: calls } = message as { function_call?: unknown; tool_calls?: unknown };
  if (!legacy && !Array.isArray(calls)) return NO_CALLS;
  const out: MessageCall[] = [];
  if (legacy) out.push(callOf(undefined, legacy));
  if (Array.isArray(calls)) {
    for (const call of calls as Array<{ id?: unknown; function?: unknown; custom?: unknown } | null>) {
      if (typeof call === 'object' && call !== null) out.push(callOf(call.id, call.function ?? call.custom));
    }
  }
  return out;
}

/** A call's id, name and text from `{name, arguments}` (a function) or `{name, input}` (a custom tool). */
export function callOf(id: unknown, call: unknown): MessageCall {
  const { name, arguments: args, input } = (typeof call === 'object' && call !== null ? call : {}) as { name?: unknown; arguments?: unknown; input?: unknown };
  return {
    id: typeof id === 'string' ? id : undefined,
    name: typeof name === 'string' ? name : undefined,
    arguments: typeof args === 'string' ? args : typeof input === 'string' ? input : '',
  };
}
