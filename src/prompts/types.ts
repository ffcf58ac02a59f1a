/**
 * Shared shapes of the prompt layer. Leaf modules (renderer, registry, selection) and
 * `experiments/` import from here; this file imports nothing.
 */

/** A message produced by rendering a template (the OpenAI chat message subset templates use). */
export interface ChatMessage {
  role: 'system' | 'developer' | 'user' | 'assistant';
  content: string;
}

/**
 * One problem found while loading templates or compiling bindings/experiments.
 * `path` follows the config loader's convention: `file: yaml.path (line N)` for a template
 * file, or a bare YAML path (`experiments[0].variants[1].version`) inside the config file.
 */
export interface ConfigIssue {
  path: string;
  message: string;
}

/** `versions[1].messages[0].content`; keys that are not plain identifiers are quoted. */
export function formatYamlPath(segments: readonly PropertyKey[]): string {
  let out = '';
  for (const s of segments) {
    if (typeof s === 'number') out += `[${s}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(String(s))) out += out === '' ? String(s) : `.${String(s)}`;
    else out += `[${JSON.stringify(String(s))}]`;
  }
  return out || '(root)';
}
