/**
 * "Did you mean ...?" for an unknown config key: the closest key the schema allows at the
 * same place, found by walking the zod schema along the path (as cargo and
 * terraform do). Load-time only.
 */
import type { z } from 'zod';

type Schema = z.core.$ZodType;
type Def = z.core.$ZodTypeDef & Record<string, unknown>;

/** Schemas that hold one inner schema and add no keys of their own. */
const WRAPPERS = new Set(['optional', 'default', 'prefault', 'nullable', 'nonoptional', 'catch', 'readonly']);

/**
 * The allowed key closest to `key` in the object at `path` of `data` (the input `schema`
 * checked), or undefined when none is close: one that differs only in case, `_` or `-`
 * (`maxEntries`, `max-entries` -> `max_entries`), else the nearest within
 * max(1, floor(length / 4)) edits (Damerau-Levenshtein). Keys the object already has are
 * never suggested.
 *
 * When none is close, a key written one level too high: the same key (case, `_` and `-`
 * aside) allowed in exactly one of this object's own object fields and not set there yet
 * (`temperature` on a template version -> `params.temperature`).
 *
 * @example
 * suggestKey(configSchema, { routng: {} }, [], 'routng') // 'routing'
 * suggestKey(configSchema, { upstreams: [{ attempts: 1 }] }, ['upstreams', 0], 'attempts') // 'retry.attempts'
 */
export function suggestKey(schema: Schema, data: unknown, path: readonly PropertyKey[], key: string): string | undefined {
  const object = valueAt(data, path);
  const present = new Set(isRecord(object) ? Object.keys(object) : []);
  const allowed = allowedKeys(schema, data, path);
  return closestKey(key, allowed.filter((k) => !present.has(k))) ?? keyOneLevelDown(schema, data, path, key, allowed);
}

/** `field.key` when exactly one of the `fields` at `path` is an object that allows `key` (loosely) and lacks it. */
function keyOneLevelDown(schema: Schema, data: unknown, path: readonly PropertyKey[], key: string, fields: readonly string[]): string | undefined {
  const found: string[] = [];
  for (const field of fields) {
    const inner = allowedKeys(schema, data, [...path, field]).find((k) => loose(k) === loose(key));
    const value = valueAt(data, [...path, field]);
    if (inner !== undefined && !(isRecord(value) && Object.hasOwn(value, inner))) found.push(`${field}.${inner}`);
  }
  return found.length === 1 ? found[0] : undefined;
}

/** The keys allowed in the object at `path`: of every object schema it may be checked against. */
export function allowedKeys(schema: Schema, data: unknown, path: readonly PropertyKey[]): string[] {
  let at = [schema];
  let value = data;
  for (const segment of path) {
    at = at.flatMap((s) => members(s, value)).flatMap((s) => child(s, segment));
    value = step(value, segment);
  }
  const keys = at.flatMap((s) => members(s, value)).flatMap((s) => (defOf(s).type === 'object' ? Object.keys((defOf(s) as unknown as z.core.$ZodObjectDef).shape) : []));
  return [...new Set(keys)];
}

/** See `suggestKey`. */
export function closestKey(key: string, allowed: readonly string[]): string | undefined {
  const same = allowed.find((a) => loose(a) === loose(key));
  if (same !== undefined) return same;
  const limit = Math.max(1, Math.floor(key.length / 4));
  let best: string | undefined;
  let bestDistance = limit + 1;
  for (const a of allowed) {
    const d = Math.min(distance(key.toLowerCase(), a.toLowerCase()), distance(loose(key), loose(a)));
    if (d < bestDistance) [best, bestDistance] = [a, d];
  }
  // Replacing every character is no typo (`n` for `x`).
  return bestDistance < key.length ? best : undefined;
}

/** A key with case, `_` and `-` ignored: `maxEntries`, `max-entries` and `max_entries` are one. */
function loose(key: string): string {
  return key.toLowerCase().replace(/[-_]/g, '');
}

/** Optimal string alignment distance: insertions, deletions, substitutions and adjacent transpositions. */
function distance(a: string, b: string): number {
  let before = new Array<number>(b.length + 1).fill(0);
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) current[j] = Math.min(current[j], before[j - 2] + 1);
    }
    [before, previous] = [previous, current];
  }
  return previous[b.length];
}

function defOf(schema: Schema): Def {
  return schema._zod.def as Def;
}

/** The schema without wrappers (optional, defaults, a transform's input side, lazy). */
function unwrap(schema: Schema): Schema {
  for (;;) {
    const def = defOf(schema);
    if (WRAPPERS.has(def.type)) schema = def.innerType as Schema;
    else if (def.type === 'pipe') schema = def.in as Schema;
    else if (def.type === 'lazy') schema = (def.getter as () => Schema)();
    else return schema;
  }
}

/**
 * The schemas `value` is checked against: a union's members, only those its discriminator
 * picks when it picks any (a context builder's `kind`), every member otherwise.
 */
function members(schema: Schema, value: unknown): Schema[] {
  const s = unwrap(schema);
  const def = defOf(s);
  if (def.type === 'intersection') return [...members(def.left as Schema, value), ...members(def.right as Schema, value)];
  if (def.type !== 'union') return [s];
  const options = def.options as Schema[];
  const discriminator = def.discriminator as string | undefined;
  const picked = discriminator !== undefined && isRecord(value) ? options.filter((o) => unwrap(o)._zod.propValues?.[discriminator]?.has(value[discriminator] as z.core.util.Primitive)) : [];
  return (picked.length > 0 ? picked : options).flatMap((o) => members(o, value));
}

/** The schema of one path segment below `schema` (already unwrapped). */
function child(schema: Schema, segment: PropertyKey): Schema[] {
  const def = defOf(schema);
  if (def.type === 'object') {
    const field = (def as unknown as z.core.$ZodObjectDef).shape[String(segment)];
    return field ? [field] : [];
  }
  if (def.type === 'array' && typeof segment === 'number') return [def.element as Schema];
  if (def.type === 'record') return [def.valueType as Schema];
  return [];
}

function valueAt(data: unknown, path: readonly PropertyKey[]): unknown {
  return path.reduce(step, data);
}

function step(value: unknown, segment: PropertyKey): unknown {
  return isRecord(value) || Array.isArray(value) ? (value as Record<PropertyKey, unknown>)[segment] : undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
