// The epoch history of a log: for each epoch present, the offset of its first batch. Kept in
// memory and rebuilt on open from the segments' index entries (every epoch change has one).
import { assert } from '../assert.js';
import type { Segment } from './segment.js';

export interface EpochEntry {
  epoch: number;
  startOffset: number;
}

export interface EpochEnd {
  epoch: number;
  endOffset: number;
}

export class EpochHistory {
  private readonly history: EpochEntry[] = [];

  static fromSegments(segments: readonly Segment[]): EpochHistory {
    const epochs = new EpochHistory();
    for (const segment of segments) {
      for (const entry of segment.indexEntries) epochs.observe(entry.epoch, entry.offset);
    }
    return epochs;
  }

  /** Records a batch of `epoch` starting at `offset` (appended in offset order). */
  observe(epoch: number, offset: number): void {
    const last = this.history[this.history.length - 1];
    if (last !== undefined && last.epoch === epoch) return;
    assert(last === undefined || (epoch > last.epoch && offset > last.startOffset), `epoch ${epoch} at ${offset} breaks the history`);
    this.history.push({ epoch, startOffset: offset });
  }

  get lastEpoch(): number {
    return this.history[this.history.length - 1]?.epoch ?? 0;
  }

  get isEmpty(): boolean {
    return this.history.length === 0;
  }

  /** Forgets every epoch (after resetTo: the log holds no batch). */
  clear(): void {
    this.history.length = 0;
  }

  entries(): EpochEntry[] {
    return this.history.map((entry) => ({ ...entry }));
  }

  /** Forgets epochs that start at or above `offset` (after truncateTo). */
  truncateFrom(offset: number): void {
    while (this.history.length > 0 && this.history[this.history.length - 1]!.startOffset >= offset) this.history.pop();
  }

  /** Drops epochs wholly below the new log start; the one spanning it now starts there. */
  trimBefore(startOffset: number): void {
    while (this.history.length > 1 && this.history[1]!.startOffset <= startOffset) this.history.shift();
    const first = this.history[0];
    if (first !== undefined && first.startOffset < startOffset) first.startOffset = startOffset;
  }

  endOffsetFor(epoch: number, logEndOffset: number): EpochEnd | null {
    let found = -1;
    for (let index = 0; index < this.history.length && this.history[index]!.epoch <= epoch; index++) found = index;
    if (found === -1) return null;
    const next = this.history[found + 1];
    return { epoch: this.history[found]!.epoch, endOffset: next === undefined ? logEndOffset : next.startOffset };
  }
}
