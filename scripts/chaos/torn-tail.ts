// A torn tail: the last segment file of a stopped broker cut at a random point after the start
// of its last batch, the way a crash in the middle of a write leaves it. Half the time the file
// is shortened there, half the time the bytes from there to the end of the data are zeroed
// (segment files are preallocated, so a torn write usually leaves zeros, not a short file).
import { readdirSync, readFileSync, truncateSync, openSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { batchProblem } from '../../src/log/codec.js';
import { segmentHeaderBytes } from '../../src/log/segment-files.js';
import type { Prng } from '../../test/sim/prng.js';

export interface TornTail {
  file: string;
  lastBatchPosition: number;
  dataEndPosition: number;
  cutPosition: number;
  mode: 'shortened' | 'zeroed';
}

/** The last whole batch's start and the end of the data, walking batches from the header on. */
export function lastBatchLayout(segment: Buffer): { lastBatchPosition: number; dataEndPosition: number } | null {
  let position = segmentHeaderBytes;
  let lastBatchPosition = -1;
  for (let batchIndex = 0; batchIndex < segment.length; batchIndex++) {
    if (batchProblem(segment, position, segment.length) !== null) break;
    lastBatchPosition = position;
    position += segment.readUInt32LE(position);
  }
  return lastBatchPosition < 0 ? null : { lastBatchPosition, dataEndPosition: position };
}

/** Cuts the broker's last segment (in `logDir`); null when it holds no batch to cut. */
export function tearLastSegment(logDir: string, prng: Prng): TornTail | null {
  const names = readdirSync(logDir)
    .filter((name) => /^\d{20}\.log$/.test(name))
    .sort();
  const last = names[names.length - 1];
  if (last === undefined) return null;
  const file = join(logDir, last);
  const layout = lastBatchLayout(readFileSync(file));
  if (layout === null) return null;
  const { lastBatchPosition, dataEndPosition } = layout;
  const cutPosition = prng.int(lastBatchPosition + 1, dataEndPosition - 1);
  const mode = prng.chance(0.5) ? 'shortened' : 'zeroed';
  if (mode === 'shortened') {
    truncateSync(file, cutPosition);
  } else {
    const fd = openSync(file, 'r+');
    try {
      writeSync(fd, Buffer.alloc(dataEndPosition - cutPosition), 0, dataEndPosition - cutPosition, cutPosition);
    } finally {
      closeSync(fd);
    }
  }
  return { file: last, lastBatchPosition, dataEndPosition, cutPosition, mode };
}
