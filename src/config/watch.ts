/**
 * Hot reload. Watches the config file's DIRECTORY, not the file's inode: editors replace
 * files by rename, and a Kubernetes ConfigMap volume swaps a `..data` symlink, so a watch on
 * the old inode would go quiet. The directories the config reads (templates, knowledge) are
 * watched too, as named by the newest config a load tried, rejected or not: the edit that
 * fixes a rejected one is in the directories it named. So is the directory holding each
 * symlink on the way to any of these (`current -> releases/r1` switched to `r2`).
 * Changes are debounced; the new config is loaded and compiled in full before it replaces
 * the old one, and an invalid config is rejected with one log line while the old one keeps
 * serving.
 */
import { readlinkSync, realpathSync, statSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { ConfigError, loadConfigFile } from './load.js';
import type { RuntimeConfig } from './compile.js';

export interface ConfigWatcherOptions {
  file: string;
  /**
   * The directories the config in force reads besides its file (`RuntimeConfig.watchDirs`).
   * Each load replaces them with its own, also a rejected one that got as far as reading them.
   */
  dirs?: readonly string[];
  debounceMs?: number;
  env?: Record<string, string | undefined>;
  onReload: (config: RuntimeConfig) => void;
  onRejected: (issues: ConfigError['issues']) => void;
}

export class ConfigWatcher {
  /**
   * Per directory: its watcher, the identity of the directory it watches (see `identityOf`)
   * and, when it is watched as the nearest existing parent of missing directories, the
   * names in it that lead to them (events for other names are not ours).
   */
  #watchers = new Map<string, { watcher: FSWatcher; identity: string; only: Set<string> | undefined }>();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  /** The errors of the last rejected reload, until a reload succeeds. */
  #lastRejection: string | undefined;
  /** The directories the newest config a load tried reads (see `ConfigWatcherOptions.dirs`). */
  #dirs: readonly string[];

  constructor(private readonly options: ConfigWatcherOptions) {
    this.#dirs = options.dirs ?? [];
    this.#sync();
  }

  /** Reloads now (also what a file event triggers after the debounce). */
  reload(): void {
    if (this.#closed) return;
    try {
      const config = loadConfigFile(this.options.file, { env: this.options.env });
      this.#dirs = config.watchDirs;
      this.options.onReload(config);
      this.#lastRejection = undefined;
    } catch (err) {
      const issues = err instanceof ConfigError ? err.issues : [{ path: this.options.file, message: 'reload failed' }];
      if (err instanceof ConfigError && err.watchDirs) this.#dirs = err.watchDirs;
      // Any event in the directory reloads (an editor's swap file, a backup): the same broken
      // file is reported once, not once per event.
      const text = issues.map((i) => `${i.path}: ${i.message}`).join('\n');
      if (text !== this.#lastRejection) this.options.onRejected(issues);
      this.#lastRejection = text;
    }
    this.#sync();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    for (const { watcher } of this.#watchers.values()) watcher.close();
    this.#watchers.clear();
  }

  #schedule = (): void => {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.reload(), this.options.debounceMs ?? 200);
    this.#timer.unref();
  };

  /** Keeps one watcher per directory of interest (the set may change with the config). */
  #sync(): void {
    if (this.#closed) return;
    // A directory that does not exist (deleted, or not created yet) is watched through its
    // nearest existing parent, for the one name that leads to it: when it is created the
    // reload that follows watches it. Else nothing would ever trigger a reload again.
    const dirs = new Map<string, Set<string> | undefined>();
    const include = (dir: string, names: Set<string> | undefined) => {
      if (names === undefined) dirs.set(dir, undefined);
      else if (!dirs.has(dir) || dirs.get(dir) !== undefined) dirs.set(dir, new Set([...(dirs.get(dir) ?? []), ...names]));
    };
    const extra = this.#dirs.map((d) => path.resolve(d));
    for (const wanted of extra) {
      const { dir, entry } = nearestExisting(wanted);
      if (dir !== undefined) include(dir, entry === undefined ? undefined : new Set([entry]));
    }
    // The config file's directory may hold anything (the gateway's own log file, written on
    // every reload): only the config file, a watched directory inside it, and Kubernetes'
    // `..data` swap count there; any other file changing there reloaded in a loop.
    const file = path.resolve(this.options.file);
    const { dir, entry } = nearestExisting(path.dirname(file));
    if (dir !== undefined) {
      const names = new Set(entry === undefined ? [path.basename(file)] : [entry]);
      if (entry === undefined) for (const d of extra) if (path.dirname(d) === dir) names.add(path.basename(d));
      include(dir, names);
    }
    // A config file that is a symlink into another directory (`gateway.config.yaml ->
    // /srv/configs/promptgate.yaml`) is edited there: that directory is watched too, for the
    // target's name. (A ConfigMap's `..data/...` target is inside the watched directory's tree.)
    const target = realPathOf(file);
    if (target !== undefined && target !== file && path.dirname(target) !== dir) include(path.dirname(target), new Set([path.basename(target)]));
    // A symlink on the way that is switched (`mv -T` of a new link over `config/templates` or
    // over the `current` of `current/gateway.config.yaml`) changes what a path names with no
    // event in the directory it named: its own directory is watched, for its name. The reload
    // that follows resolves the paths again, and the directories now named are watched.
    for (const watched of [file, ...extra]) for (const link of symlinksOnTheWay(watched)) include(link.dir, new Set([link.name]));
    for (const [dir, { watcher, identity }] of this.#watchers) {
      // A directory deleted (or replaced) leaves a watcher on the old inode that never fires again.
      if (!dirs.has(dir) || identityOf(dir) !== identity) {
        watcher.close();
        this.#watchers.delete(dir);
      }
    }
    for (const [dir, only] of dirs) {
      const current = this.#watchers.get(dir);
      if (current) {
        current.only = only;
        continue;
      }
      const identity = identityOf(dir);
      if (identity === undefined) continue; // Gone since `nearestExisting`: the next reload retries.
      try {
        const watcher = watch(dir, { persistent: false }, (_event, name) => {
          const filter = this.#watchers.get(dir)?.only;
          if (filter && name !== null && !filter.has(String(name)) && !String(name).startsWith('..')) return;
          this.#schedule();
        });
        watcher.on('error', () => {
          watcher.close();
          if (this.#watchers.get(dir)?.watcher === watcher) this.#watchers.delete(dir);
        });
        this.#watchers.set(dir, { watcher, identity, only });
      } catch {
        // Gone between the stat and the watch: as above.
      }
    }
  }
}

/** `dir` when it exists, else its nearest existing parent and the name in it on the way to `dir`. */
function nearestExisting(dir: string): { dir: string | undefined; entry: string | undefined } {
  let entry: string | undefined;
  for (let at = dir; ; ) {
    if (identityOf(at) !== undefined) return { dir: at, entry };
    const up = path.dirname(at);
    if (up === at) return { dir: undefined, entry: undefined };
    entry = path.basename(at);
    at = up;
  }
}

/** More symlinks than this on one path is a loop (Linux's ELOOP limit is 40). */
const MAX_SYMLINKS = 40;

/**
 * Each symlink met on the way to `target` (its directory and its name), inside the targets
 * of links too, as the kernel resolves the path. Stops at the first missing entry.
 */
function symlinksOnTheWay(target: string): Array<{ dir: string; name: string }> {
  const links: Array<{ dir: string; name: string }> = [];
  const absolute = path.resolve(target);
  let at = path.parse(absolute).root;
  let rest = absolute.slice(at.length).split(path.sep);
  while (rest.length > 0 && links.length <= MAX_SYMLINKS) {
    const name = rest.shift()!;
    if (name === '' || name === '.') continue;
    if (name === '..') {
      at = path.dirname(at);
      continue;
    }
    const next = path.join(at, name);
    let link: string;
    try {
      link = readlinkSync(next);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EINVAL') break; // missing: nothing further on exists
      at = next; // not a symlink
      continue;
    }
    links.push({ dir: at, name });
    if (path.isAbsolute(link)) at = path.parse(link).root;
    rest = [...link.split(path.sep), ...rest];
  }
  return links;
}

/** The file `file` names once every symlink is followed; undefined when it is missing. */
function realPathOf(file: string): string | undefined {
  try {
    return realpathSync(file);
  } catch {
    return undefined;
  }
}

/**
 * Which directory `dir` names now (symlinks followed): device, inode and birth time, since a
 * directory recreated at once may get the freed inode number back. Undefined when missing.
 */
function identityOf(dir: string): string | undefined {
  try {
    const s = statSync(dir);
    return `${s.dev}:${s.ino}:${s.birthtimeMs}`;
  } catch {
    return undefined;
  }
}
