/**
 * A string a long-lived cache may keep as a key without keeping more than the key.
 *
 * V8 makes `slice`, `substring`, `trim` and template literals share the characters of the
 * string they came from (sliced and cons strings): a 40-character line of a 1 MB message,
 * kept as a cache key, keeps the whole message alive, and a cache bounded by the length of
 * its keys then holds gigabytes. `ownCopy` returns the same text in storage of its own:
 * prefixing a character makes a cons string, which `slice` flattens into a new sequential
 * string before slicing it. Call it where a cache stores a key (a miss), not where it looks
 * one up.
 */
export function ownCopy(text: string): string {
  return (' ' + text).slice(1);
}
