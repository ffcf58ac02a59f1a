/**
 * Who the request is for: the user id experiments assign by, from `identity.user_id_from`
 * (`body.user`, `body.safety_identifier`, `body.metadata.user_id`, `header.x-user-id`...),
 * first non-empty string wins. Compiled once per config load. The id is kept whole: the
 * assignment rule (DESIGN.md) hashes all of it, so a cut id would land in another bucket
 * than the one any other implementation (or /admin/assign) computes.
 */
import { exactLiteral } from '../proxy/exact-json.js';

export type UserIdOf = (body: Readonly<Record<string, unknown>>, header: (name: string) => string | undefined) => string | undefined;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The user id as the assignment hashes it: surrounding whitespace dropped (a pasted id's
 * trailing newline must not move the user), undefined when nothing is left. `/admin/assign`
 * uses it too, so support staff see the bucket the gateway serves.
 */
export function normalizeUserId(raw: string | undefined): string | undefined {
  const id = raw?.trim();
  return id ? id : undefined;
}

/**
 * A header value as UTF-8 text. Node reads header bytes as Latin-1, so a UTF-8 id sent by
 * curl or httpx (`x-user-id: Zoë`) would hash other bytes than the same id in `body.user`;
 * values that are not valid UTF-8 stay as read.
 */
export function headerText(value: string | undefined): string | undefined {
  if (value === undefined || !/[\x80-\xff]/.test(value) || /[^\x00-\xff]/.test(value)) return value;
  try {
    return utf8.decode(Buffer.from(value, 'latin1'));
  } catch {
    return value;
  }
}

export function compileIdentity(sources: readonly string[]): UserIdOf {
  const readers = sources.map((source): UserIdOf => {
    const [where, ...rest] = source.split('.');
    if (where === 'header') {
      const name = rest.join('.').toLowerCase();
      return (_body, header) => headerText(header(name));
    }
    const path = rest;
    return (body) => {
      let holder: unknown;
      let v: unknown = body;
      for (const key of path) {
        if (v === null || typeof v !== 'object') return undefined;
        holder = v;
        v = (v as Record<string, unknown>)[key];
      }
      if (typeof v === 'string') return v;
      if (typeof v !== 'number') return undefined;
      // A numeric id past 2^53 as the client wrote it: as a double, ids that round alike
      // would be one user, and other systems hashing the digits would disagree.
      return exactLiteral(holder as object, path[path.length - 1]) ?? String(v);
    };
  });
  return (body, header) => {
    for (const read of readers) {
      const id = normalizeUserId(read(body, header));
      if (id) return id;
    }
    return undefined;
  };
}
