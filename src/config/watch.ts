/**
 * Hot reload. Watches the config file's DIRECTORY, not the file's inode: editors replace
 * files by rename, and a Kubernetes ConfigMap volume swaps a `..data` symlink, so a watch on
 * the old inode would go quiet. Templates (a directory the config points at) are watched
 * too. Changes are debounced; the new config is loaded and compiled in full before it
 * replaces the old one, and an invalid config is rejected with one log line while the old
 * one keeps serving.
 */
import { statSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { ConfigError, loadConfigFile } from './load.js';
import type { RuntimeConfig } from './compile.js';

export interface ConfigWatcherOptions {
  file: string;
  /** Further directories to watch (e.g. the templates directory). */
  extraDirs?: () => string[];
  debounceMs?: number;
  env?: Record<string, string | undefined>;
  onReload: (config: RuntimeConfig) => void;
  onRejected: (issues: ConfigError['issues']) => void;
}

export class ConfigWatcher {
  /** Per directory: its watcher and the identity of the directory it watches (see `identityOf`). */
  #watchers = new Map<string, { watcher: FSWatcher; identity: string }>();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(private readonly options: ConfigWatcherOptions) {
    this.#sync();
  }

  /** Reloads now (also what a file event triggers after the debounce). */
  reload(): void {
    if (this.#closed) return;
    try {
      const config = loadConfigFile(this.options.file, { env: this.options.env });
      this.options.onReload(config);
    } catch (err) {
      if (err instanceof ConfigError) this.options.onRejected(err.issues);
      else this.options.onRejected([{ path: this.options.file, message: 'reload failed' }]);
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
    const dirs = new Set([path.dirname(path.resolve(this.options.file)), ...(this.options.extraDirs?.() ?? []).map((d) => path.resolve(d))]);
    for (const [dir, { watcher, identity }] of this.#watchers) {
      // A directory deleted (or replaced) leaves a watcher on the old inode that never fires again.
      if (!dirs.has(dir) || identityOf(dir) !== identity) {
        watcher.close();
        this.#watchers.delete(dir);
      }
    }
    for (const dir of dirs) {
      if (this.#watchers.has(dir)) continue;
      const identity = identityOf(dir);
      if (identity === undefined) continue; // A directory that does not exist (yet) is not watched; the next reload retries.
      try {
        const watcher = watch(dir, { persistent: false }, this.#schedule);
        watcher.on('error', () => {
          watcher.close();
          if (this.#watchers.get(dir)?.watcher === watcher) this.#watchers.delete(dir);
        });
        this.#watchers.set(dir, { watcher, identity });
      } catch {
        // Gone between the stat and the watch: as above.
      }
    }
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
