// Loads the native addon (built by `make native-build` from native/mamba_native.cc): shared file
// mappings and CRC32C. Everything else in the log is TypeScript.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

interface NativeAddon {
  map(fd: number, length: number): Buffer;
  release(mapping: Buffer): void;
  crc32c(bytes: Uint8Array, seed?: number): number;
  crc32cSoftware(bytes: Uint8Array, seed?: number): number;
  readonly crc32cHardware: boolean;
  readonly pageBytes: number;
}

const addonRelativePath = join('build', 'Release', 'mamba_native.node');

// The compiled module sits at dist/src/log/ and the source at src/log/: walk up to the directory
// that holds build/ rather than hard-coding the depth.
function findAddon(): string {
  let directory = dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 6; depth++) {
    const candidate = join(directory, addonRelativePath);
    if (existsSync(candidate)) return candidate;
    directory = resolve(directory, '..');
  }
  throw new Error(`native addon ${addonRelativePath} not found: run "make native-build"`);
}

const addon = createRequire(import.meta.url)(findAddon()) as NativeAddon;

/** CRC32C (Castagnoli) of `bytes`, continuing from `seed` (the CRC of the bytes before). */
export const crc32c: (bytes: Uint8Array, seed?: number) => number = addon.crc32c;
/** The table-driven implementation, always available; used to cross-check the hardware one. */
export const crc32cSoftware: (bytes: Uint8Array, seed?: number) => number = addon.crc32cSoftware;
/** True when crc32c runs on the CPU's CRC32 instruction (SSE4.2). */
export const crc32cHardware: boolean = addon.crc32cHardware;
export const pageBytes: number = addon.pageBytes;

/** A read/write MAP_SHARED mapping of the first `length` bytes of the open file `fd`. */
export function mapFile(fd: number, length: number): Buffer {
  return addon.map(fd, length);
}

/**
 * Detach a mapping from its file now; views still held read as zeros (never fault). The memory
 * itself is unmapped when the last view is garbage-collected.
 */
export function releaseMapping(mapping: Buffer): void {
  addon.release(mapping);
}
