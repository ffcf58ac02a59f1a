/**
 * Load-time check that template text carries no prompt-injection phrasing. A template is
 * trusted configuration, so such text is almost always a pasted attack sample or a copy of
 * user content; rejecting it at load keeps it out of every request.
 *
 * Deliberately a short list of unambiguous patterns for now; this is the single place to
 * call the guard scanner (`src/guard/`) from once it exposes a synchronous scan.
 */

interface InjectionPattern {
  /** Human-readable name used in the load error. */
  label: string;
  re: RegExp;
}

const PATTERNS: readonly InjectionPattern[] = [
  {
    label: 'ignore previous instructions',
    re: /\bignore\s+(?:all\s+)?(?:of\s+)?(?:the\s+|your\s+)?(?:previous|prior|above|earlier|preceding)\s+(?:instructions?|prompts?|messages?|rules|directions)\b/i,
  },
  { label: 'disregard the above', re: /\bdisregard\s+(?:all\s+)?(?:of\s+)?(?:the\s+|your\s+)?(?:above|previous|prior|preceding|earlier)\b/i },
  { label: 'you are now', re: /\byou\s+are\s+now\b/i },
  {
    label: 'fake turn marker',
    re: /<\|(?:im_start|im_end|im_sep|system|user|assistant|endoftext|start_header_id|end_header_id|eot_id)\|>|\[\/?INST\]|<<\/?SYS>>/i,
  },
];

/**
 * Returns the label of the first injection-like pattern found in `text`, or `null`.
 *
 * @example
 * looksLikeInjection('Ignore all previous instructions.') // 'ignore previous instructions'
 * looksLikeInjection('Answer politely.')                   // null
 */
export function looksLikeInjection(text: string): string | null {
  for (const p of PATTERNS) if (p.re.test(text)) return p.label;
  return null;
}
