// One broker per data directory. Two processes appending to one segment log or one LMDB
// environment would interleave writes that each believes it alone makes; so a replica holds
// `<dataDir>/LOCK` (its pid) while it runs and a second opener fails at once, naming the holder.
// The lock is a file created exclusively, as PostgreSQL's postmaster.pid: a holder that died
// (kill -9 leaves the file) is recognised by its pid no longer running and the lock is taken over.
// A file naming our own pid that this process does not hold is stale too (PostgreSQL makes the
// same exception): in a container the broker gets the same pid at every start (pid 1), so the
// file a killed broker left names the restarted one.
import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** Lock files this process holds, to tell "opened twice here" from "left by an earlier process with our pid". */
const heldHere = new Set<string>();

export class DataDirLockedError extends Error {
  override readonly name = 'DataDirLockedError';
  constructor(
    readonly dir: string,
    readonly holderPid: number,
  ) {
    super(`data directory ${dir} is in use by process ${holderPid} (lock file ${join(dir, 'LOCK')}); one broker per data directory`);
  }
}

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function holderOf(file: string): number | null {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/** The pid of the live process holding `dir`'s lock, or null (none, or a dead holder's stale file). Reads only. */
export function lockHolder(dir: string): number | null {
  const holder = holderOf(join(dir, 'LOCK'));
  return holder !== null && running(holder) ? holder : null;
}

export class DataDirLock {
  private released = false;
  private readonly onExit = (): void => this.release();

  private constructor(
    readonly dir: string,
    private readonly file: string,
  ) {
    heldHere.add(file);
    process.once('exit', this.onExit);
  }

  /** Takes the lock of `dir` (created if missing) or throws DataDirLockedError. */
  static acquire(dir: string): DataDirLock {
    mkdirSync(dir, { recursive: true });
    const file = resolve(dir, 'LOCK');
    // Two attempts: the second after taking over a dead holder's file.
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(file, 'wx', 0o644);
        try {
          writeSync(fd, `${process.pid}\n`);
        } finally {
          closeSync(fd);
        }
        return new DataDirLock(dir, file);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const holder = holderOf(file);
      if (holder === process.pid) {
        if (heldHere.has(file)) throw new DataDirLockedError(dir, holder); // opened twice in one process
        // else: an earlier process with our pid (a restarted container) left it: stale.
      } else if (holder !== null && running(holder)) throw new DataDirLockedError(dir, holder);
      // The holder died (or never finished writing its pid): its lock is stale.
      try {
        unlinkSync(file);
      } catch {
        // another opener removed it first; the next attempt decides
      }
    }
    const holder = holderOf(file);
    throw new DataDirLockedError(dir, holder ?? -1);
  }

  /** Removes the lock file if it is still ours; idempotent. */
  release(): void {
    if (this.released) return;
    this.released = true;
    heldHere.delete(this.file);
    process.removeListener('exit', this.onExit);
    if (holderOf(this.file) !== process.pid) return;
    try {
      unlinkSync(this.file);
    } catch {
      // already gone
    }
  }
}
