/**
 * Step 1 of the injection normaliser (normalize.ts), and the same cap on text NFKC expands
 * (step 3): text longer than the room is read as its head and tail, and no cut splits a
 * surrogate pair.
 */
const NON_ASCII_RUN = /[^\0-\x7f]+/g;

/** Whether cutting `text` before unit `i` would split a surrogate pair. */
function splitsPair(text: string, i: number): boolean {
  const hi = text.charCodeAt(i - 1);
  const lo = text.charCodeAt(i);
  return hi >= 0xd800 && hi <= 0xdbff && lo >= 0xdc00 && lo <= 0xdfff;
}

/**
 * `text` as its head and tail joined by a newline, `room` units at most, the head about
 * `head` of them. No cut splits a surrogate pair: the tail starts with a whole pair (the
 * head gives up the unit), the head ends before one.
 */
export function headAndTail(text: string, head: number, room: number): string {
  let h = head;
  let t = text.length - (room - head - 1);
  if (splitsPair(text, t)) {
    t--;
    h--;
  }
  if (splitsPair(text, h)) h--;
  return `${text.slice(0, h)}\n${text.slice(t)}`;
}

/**
 * `raw` in NFKC, fitting `room` units (what a fold from `buf[start]` can read, see
 * `TextNormalizer.load`). A few compatibility characters expand to many (U+FDFA to 18
 * characters, squared words to 4):
 * when the whole text would not fit, each run of non-ASCII characters keeps at most two
 * units per unit of its own (ASCII is NFKC already; a combining mark kept apart from its
 * ASCII letter is folded away like any accent), so padding cannot push the rest of a
 * message out of the scan; what still does not fit is read as head and tail, like a long
 * input.
 */
export function nfkcWithin(raw: string, room: number): string {
  let text = raw.normalize('NFKC');
  if (text.length <= room) return text;
  text = raw.replace(NON_ASCII_RUN, (run) => {
    const folded = run.normalize('NFKC');
    if (folded.length <= 2 * run.length) return folded;
    const end = 2 * run.length;
    return folded.slice(0, splitsPair(folded, end) ? end - 1 : end);
  });
  if (text.length <= room) return text;
  return headAndTail(text, Math.floor(room * 0.75), room);
}
