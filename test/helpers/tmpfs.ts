/**
 * Small tmpfs mounts for the storage fault tests (they run as root, locally and in CI): a disk
 * that fills up (`fill` / `free`) and a directory that turns read-only (`readOnly` / `writable`;
 * as root, chmod does not stop writes, a read-only mount does). Every mount gets its own temp
 * directory; `unmountAll` (afterAll) unmounts and removes them.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const mounted = new Set<string>();

export interface Tmpfs {
  /** The mount point. */
  dir: string;
  /** Writes a filler file until the file system is full (ENOSPC). */
  fill(): void;
  /** Deletes the filler file. */
  free(): void;
  /** Remounts read-only (fails with EBUSY while a file is open for writing). */
  readOnly(): void;
  /** Remounts read-write. */
  writable(): void;
}

/** Mounts a tmpfs of `sizeMb` MB on a new temp directory. */
export function mountTmpfs(sizeMb: number): Tmpfs {
  const dir = mkdtempSync(join(tmpdir(), 'limiter-tmpfs-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMb}m,mode=0755`, 'tmpfs', dir]);
  mounted.add(dir);
  const filler = join(dir, 'filler');
  return {
    dir,
    fill() {
      const fd = openSync(filler, 'a');
      try {
        for (const chunk of [1 << 20, 4096, 512]) {
          const buf = Buffer.alloc(chunk, 0x55);
          for (;;) {
            try {
              writeSync(fd, buf);
            } catch (err) {
              if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
              throw err;
            }
          }
        }
      } finally {
        closeSync(fd);
      }
    },
    free() {
      rmSync(filler, { force: true });
    },
    readOnly() {
      execFileSync('mount', ['-o', 'remount,ro', dir]);
    },
    writable() {
      execFileSync('mount', ['-o', 'remount,rw', dir]);
    },
  };
}

/** Unmounts every tmpfs mounted here and removes the mount points. */
export function unmountAll(): void {
  for (const dir of mounted) {
    try {
      execFileSync('umount', ['-l', dir]);
    } catch {
      /* already unmounted */
    }
    rmSync(dir, { recursive: true, force: true });
    mounted.delete(dir);
  }
}
