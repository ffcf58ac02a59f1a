/**
 * Who the request is for: the user id experiments assign by, from `identity.user_id_from`
 * (`body.user`, `body.safety_identifier`, `body.metadata.user_id`, `header.x-user-id`...),
 * first non-empty string wins. Compiled once per config load. The id is kept whole: the
 * assignment rule (DESIGN.md) hashes all of it, so a cut id would land in another bucket
 * than the one any other implementation (or /admin/assign) computes.
 */

export type UserIdOf = (body: Readonly<Record<string, unknown>>, header: (name: string) => string | undefined) => string | undefined;

export function compileIdentity(sources: readonly string[]): UserIdOf {
  const readers = sources.map((source): UserIdOf => {
    const [where, ...rest] = source.split('.');
    if (where === 'header') {
      const name = rest.join('.').toLowerCase();
      return (_body, header) => header(name);
    }
    const path = rest;
    return (body) => {
      let v: unknown = body;
      for (const key of path) {
        if (v === null || typeof v !== 'object') return undefined;
        v = (v as Record<string, unknown>)[key];
      }
      return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : undefined;
    };
  });
  return (body, header) => {
    for (const read of readers) {
      const id = read(body, header)?.trim();
      if (id) return id;
    }
    return undefined;
  };
}
