// What the replica stores as a snapshot file's payload (the SnapshotStore keeps it opaque and
// checksums it): the core's SnapshotMeta (its id and the membership entry in force at its end,
// which a replica installing it needs without the entries it replaces) and the state machine's
// own bytes. Versioned and length-prefixed, little-endian:
//   0 magic "MRSP" | 4 u16 version (1) | 6 u16 reserved (0)
//   8 u64 endOffset | 16 u32 epoch | 20 u32 membershipBytes (0xffffffff: no membership entry)
//   24 u64 membership entry offset (0 without one)
//   32 the membership entry's payload as the log stores it (membership.ts encodes and decodes it)
//   then u64 machinePayloadBytes, then the machine's payload (to the end).
// Decoding checks every length against what is left, and the id against the file's name: a
// mismatch is snapshot_corrupt (the store's CRC passed, so it is a writer's bug or a foreign file).
import { assert } from '../assert.js';
import { configOfRecord, decodeMembershipRecord, encodeMembershipConfig } from '../raft/membership.js';
import type { MembershipRecord, SnapshotMeta } from '../raft/types.js';
import { SnapshotError, type SnapshotId } from './snapshot-store.js';

const magic = Buffer.from('MRSP', 'latin1');
const version = 1;
const fixedBytes = 32;
const noMembership = 0xffff_ffff;
/** Bound on the membership entry a snapshot carries (64 members with two endpoints each fit). */
export const snapshotMembershipBytesMax = 64 * 1024;

export interface SnapshotContent {
  meta: SnapshotMeta;
  /** The state machine's bytes (a view into the decoded buffer). */
  machinePayload: Buffer;
}

/** The file payload for `meta` and the machine's `machinePayload` (one copy of it). */
export function encodeSnapshotPayload(meta: SnapshotMeta, machinePayload: Uint8Array): Buffer {
  assert(Number.isSafeInteger(meta.endOffset) && meta.endOffset >= 1, 'snapshot payload: bad endOffset');
  assert(Number.isInteger(meta.epoch) && meta.epoch >= 1 && meta.epoch <= 0xffff_ffff, 'snapshot payload: bad epoch');
  const membership = meta.membership === null ? null : Buffer.from(encodeMembershipConfig(configOfRecord(meta.membership)));
  assert(membership === null || membership.byteLength <= snapshotMembershipBytesMax, 'snapshot payload: membership entry too large');
  assert(meta.membership === null || meta.membership.offset < meta.endOffset, 'snapshot payload: membership entry beyond its end');
  const membershipBytes = membership?.byteLength ?? 0;
  const head = Buffer.alloc(fixedBytes + membershipBytes + 8);
  magic.copy(head, 0);
  head.writeUInt16LE(version, 4);
  head.writeBigUInt64LE(BigInt(meta.endOffset), 8);
  head.writeUInt32LE(meta.epoch, 16);
  head.writeUInt32LE(membership === null ? noMembership : membershipBytes, 20);
  head.writeBigUInt64LE(BigInt(meta.membership?.offset ?? 0), 24);
  membership?.copy(head, fixedBytes);
  head.writeBigUInt64LE(BigInt(machinePayload.byteLength), fixedBytes + membershipBytes);
  return Buffer.concat([head, machinePayload]);
}

function corrupt(id: SnapshotId, problem: string): SnapshotError {
  return new SnapshotError('snapshot_corrupt', `snapshot ${id.endOffset}-${id.epoch}: payload ${problem}`);
}

/** Reads what encodeSnapshotPayload wrote for snapshot `id`; snapshot_corrupt when it does not hold. */
export function decodeSnapshotPayload(id: SnapshotId, payload: Buffer): SnapshotContent {
  if (payload.byteLength < fixedBytes + 8 || !payload.subarray(0, 4).equals(magic)) throw corrupt(id, 'has no replica header');
  if (payload.readUInt16LE(4) !== version) throw corrupt(id, `has unsupported version ${payload.readUInt16LE(4)}`);
  const endOffset = Number(payload.readBigUInt64LE(8));
  const epoch = payload.readUInt32LE(16);
  if (endOffset !== id.endOffset || epoch !== id.epoch) throw corrupt(id, `names snapshot ${endOffset}-${epoch}`);
  const membershipBytes = payload.readUInt32LE(20);
  const membershipOffset = Number(payload.readBigUInt64LE(24));
  let position = fixedBytes;
  let membership: MembershipRecord | null = null;
  if (membershipBytes !== noMembership) {
    if (membershipBytes > snapshotMembershipBytesMax || position + membershipBytes + 8 > payload.byteLength) throw corrupt(id, 'has a bad membership length');
    if (!Number.isSafeInteger(membershipOffset) || membershipOffset >= endOffset) throw corrupt(id, 'has a membership entry beyond its end');
    membership = decodeMembershipRecord(membershipOffset, payload.subarray(position, position + membershipBytes));
    position += membershipBytes;
  }
  if (position + 8 > payload.byteLength) throw corrupt(id, 'ends before the machine payload length');
  const machineBytes = Number(payload.readBigUInt64LE(position));
  position += 8;
  if (machineBytes !== payload.byteLength - position) throw corrupt(id, `says ${machineBytes} machine bytes, holds ${payload.byteLength - position}`);
  return { meta: { endOffset, epoch, membership }, machinePayload: payload.subarray(position) };
}
