// A file a broker reloads when it changes, without a restart: fs.watch for prompt reloads plus a
// periodic stat as a fallback (fs.watch misses changes on some file systems and after a rename).
// A file that fails to parse keeps the last good value in force and is reported once per change.
import { watch, statSync, readFileSync, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';

export interface WatchedFileEvents {
  onReload(file: string): void;
  onError(file: string, message: string): void;
}

export class WatchedFile<T> {
  private current: T;
  private stamp: string;
  private watcher: FSWatcher | null = null;
  private readonly timer: NodeJS.Timeout;
  private debounce: NodeJS.Timeout | null = null;

  /** Reads and parses `file` now; throws when it cannot (a broker does not start without it). */
  constructor(
    readonly file: string,
    private readonly parse: (text: string, source: string) => T,
    private readonly events: WatchedFileEvents,
    statIntervalMs = 1000,
  ) {
    this.stamp = stampOf(file);
    this.current = parse(readFileSync(file, 'utf8'), file);
    try {
      // Watch the directory: editors replace files by rename, which ends a watch on the file.
      this.watcher = watch(dirname(file), { persistent: false }, (_event, name) => {
        if (name === null || name === basename(file)) this.scheduleCheck();
      });
      this.watcher.on('error', () => {
        this.watcher?.close();
        this.watcher = null;
      });
    } catch {
      this.watcher = null; // the periodic stat still reloads
    }
    this.timer = setInterval(() => this.check(), statIntervalMs);
    this.timer.unref();
  }

  get value(): T {
    return this.current;
  }

  private scheduleCheck(): void {
    if (this.debounce) return;
    this.debounce = setTimeout(() => {
      this.debounce = null;
      this.check();
    }, 50);
    this.debounce.unref();
  }

  /** Reloads when the file's size, mtime or inode changed since the last look. */
  check(): void {
    const stamp = stampOf(this.file);
    if (stamp === this.stamp) return;
    this.stamp = stamp;
    try {
      this.current = this.parse(readFileSync(this.file, 'utf8'), this.file);
      this.events.onReload(this.file);
    } catch (error) {
      this.events.onError(this.file, (error as Error).message);
    }
  }

  close(): void {
    clearInterval(this.timer);
    if (this.debounce) clearTimeout(this.debounce);
    this.watcher?.close();
  }
}

function stampOf(file: string): string {
  try {
    const s = statSync(file, { bigint: true });
    return `${s.ino}:${s.size}:${s.mtimeNs}`;
  } catch (error) {
    return `missing:${(error as NodeJS.ErrnoException).code ?? ''}`;
  }
}
