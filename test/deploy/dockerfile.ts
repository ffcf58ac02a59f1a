/**
 * A small Dockerfile reader for the deploy tests (no Docker engine here): instructions,
 * stages, exec-form arrays, COPY/RUN flags, ENV pairs, and a .dockerignore matcher.
 */
import { readFileSync } from 'node:fs';

export interface Instruction {
  /** Upper-case keyword: FROM, RUN, COPY, ... */
  cmd: string;
  /** Everything after the keyword, continuation lines joined. */
  args: string;
  line: number;
}

export interface Stage {
  index: number;
  image: string;
  name?: string;
  instructions: Instruction[];
}

export function parseDockerfile(text: string): { instructions: Instruction[]; stages: Stage[] } {
  const lines = text.split(/\r?\n/);
  const instructions: Instruction[] = [];
  let buf = '';
  let start = 0;
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i];
    const trimmed = raw.trim();
    // Comment lines (also inside a continuation) and blank lines.
    if (trimmed.startsWith('#') || (trimmed === '' && buf === '')) continue;
    if (buf === '') start = i + 1;
    if (trimmed.endsWith('\\')) {
      buf += trimmed.slice(0, -1) + ' ';
      continue;
    }
    buf += trimmed;
    if (buf.trim() !== '') {
      const m = /^(\S+)\s*([\s\S]*)$/.exec(buf.trim());
      if (m) instructions.push({ cmd: m[1].toUpperCase(), args: m[2].trim(), line: start });
    }
    buf = '';
  }
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.cmd === 'FROM') {
      const parts = splitFlags(ins.args).rest.split(/\s+/);
      const asIdx = parts.findIndex((p) => p.toUpperCase() === 'AS');
      stages.push({ index: stages.length, image: parts[0], name: asIdx > 0 ? parts[asIdx + 1] : undefined, instructions: [] });
    } else if (stages.length > 0) {
      stages[stages.length - 1].instructions.push(ins);
    }
  }
  return { instructions, stages };
}

export function readDockerfile(path: string) {
  return parseDockerfile(readFileSync(path, 'utf8'));
}

/** Leading `--flag=value` / `--flag` options, and the rest. */
export function splitFlags(args: string): { flags: Record<string, string | true>; rest: string } {
  const flags: Record<string, string | true> = {};
  let rest = args.trim();
  for (;;) {
    const m = /^--([a-zA-Z-]+)(?:=(\S+))?\s*/.exec(rest);
    if (!m) break;
    flags[m[1]] = m[2] ?? true;
    rest = rest.slice(m[0].length);
  }
  return { flags, rest };
}

/** The JSON array of an exec-form CMD/ENTRYPOINT/RUN, or undefined for shell form. */
export function execForm(args: string): string[] | undefined {
  const s = args.trim();
  if (!s.startsWith('[')) return undefined;
  try {
    const v: unknown = JSON.parse(s);
    return Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : undefined;
  } catch {
    return undefined;
  }
}

/** COPY/ADD: flags, sources and destination. */
export function parseCopy(args: string): { flags: Record<string, string | true>; sources: string[]; dest: string } {
  const { flags, rest } = splitFlags(args);
  const parts = execForm(rest) ?? rest.split(/\s+/).filter(Boolean);
  return { flags, sources: parts.slice(0, -1), dest: parts[parts.length - 1] };
}

/** HEALTHCHECK: options and the CMD part. */
export function parseHealthcheck(args: string): { flags: Record<string, string | true>; cmd?: string[]; shell?: string; none: boolean } {
  const { flags, rest } = splitFlags(args);
  if (/^NONE$/i.test(rest)) return { flags, none: true };
  const m = /^CMD\s+([\s\S]*)$/i.exec(rest);
  if (!m) return { flags, none: false };
  const cmd = execForm(m[1]);
  return cmd ? { flags, cmd, none: false } : { flags, shell: m[1], none: false };
}

/** ENV key=value pairs (quoted values allowed) or the legacy `ENV key value`. */
export function parseEnv(args: string): Record<string, string> {
  const out: Record<string, string> = {};
  const s = args.trim();
  if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(s)) {
    const m = /^(\S+)\s+([\s\S]*)$/.exec(s);
    if (m) out[m[1]] = m[2];
    return out;
  }
  const re = /([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|'[^']*'|\S*)/g;
  for (let m = re.exec(s); m !== null; m = re.exec(s)) {
    let v = m[2];
    if (v.startsWith('"')) v = v.slice(1, -1).replace(/\\(.)/g, '$1');
    else if (v.startsWith("'")) v = v.slice(1, -1);
    out[m[1]] = v;
  }
  return out;
}

/** All ENV of a stage, in order (later wins). */
export function stageEnv(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const ins of stage.instructions) if (ins.cmd === 'ENV') Object.assign(env, parseEnv(ins.args));
  return env;
}

/** The stage's working directory after its last WORKDIR (absolute paths only). */
export function stageWorkdir(stage: Stage): string {
  let wd = '/';
  for (const ins of stage.instructions) {
    if (ins.cmd === 'WORKDIR') wd = ins.args.startsWith('/') ? ins.args : `${wd.replace(/\/$/, '')}/${ins.args}`;
  }
  return wd;
}

/** RUN: BuildKit flags (--mount, --network...) and the command (shell or exec form). */
export function parseRun(args: string): { flags: Record<string, string | true>; command: string } {
  const { flags, rest } = splitFlags(args);
  const exec = execForm(rest);
  return { flags, command: exec ? exec.join(' ') : rest };
}

// ---------------------------------------------------------------------------
// .dockerignore (Go filepath.Match-like patterns, `**`, `!` exceptions, last match wins)

export function dockerignoreMatcher(text: string): (path: string) => boolean {
  const rules = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pat = (negate ? l.slice(1) : l).trim().replace(/^\/+/, '').replace(/\/+$/, '');
      return { negate, re: globToRegExp(pat) };
    });
  return (path: string) => {
    const p = path.replace(/^\.\//, '').replace(/^\/+/, '').replace(/\/+$/, '');
    // A path is excluded if it or any parent directory matches (docker semantics).
    const prefixes: string[] = [];
    const parts = p.split('/');
    for (let i = 1; i <= parts.length; i++) prefixes.push(parts.slice(0, i).join('/'));
    let excluded = false;
    for (const r of rules) {
      if (prefixes.some((x) => r.re.test(x))) excluded = !r.negate;
    }
    return excluded;
  };
}

function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*') {
      if (glob[i + 1] === '*') {
        // `**/` matches any number of directories, `**` anything.
        if (glob[i + 2] === '/') {
          re += '(?:.*/)?';
          i += 2;
        } else {
          re += '.*';
          i += 1;
        }
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if ('\\^$.|+()[]{}'.includes(c)) re += `\\${c}`;
    else re += c;
  }
  return new RegExp(`^${re}$`);
}
