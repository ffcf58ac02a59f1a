/**
 * Strict UTF-8 for every file a config load reads: the config file and the template files.
 * `readFileSync(file, 'utf8')` turns each invalid byte into U+FFFD without a word: a Latin-1
 * `é` in a system prompt or model name reached the upstream as `�`, and a UTF-16 file
 * (PowerShell's `>`) read as one unknown key, or as a template that is "a string".
 */
import { isUtf8 } from 'node:buffer';

/** The file's text, or why it has none: the message and, when one is to blame, the line. */
export type Decoded = { text: string } | { error: string; line?: number };

/**
 * Reads `bytes` as strict UTF-8 (YAML 1.2 §5.2; a UTF-8 byte order mark is dropped).
 *
 * @example
 * const decoded = decodeUtf8(readFileSync(file));
 * if ('error' in decoded) issues.push({ path: `${name} (line ${decoded.line})`, message: decoded.error });
 */
export function decodeUtf8(bytes: Buffer): Decoded {
  if ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff)) {
    return { error: 'the file is UTF-16; save it as UTF-8' };
  }
  if (isUtf8(bytes)) return { text: new TextDecoder('utf-8').decode(bytes) }; // drops a BOM, as YAML does
  return { error: 'the file is not UTF-8 (a Latin-1 or Windows-1252 character?); save it as UTF-8', line: firstInvalidLine(bytes) };
}

/** The first line holding a byte sequence that is not UTF-8 (0x0a is never part of a multi-byte sequence). */
function firstInvalidLine(bytes: Buffer): number {
  let line = 1;
  for (let from = 0; ; line++) {
    const nl = bytes.indexOf(0x0a, from);
    if (!isUtf8(bytes.subarray(from, nl < 0 ? bytes.length : nl)) || nl < 0) return line;
    from = nl + 1;
  }
}
