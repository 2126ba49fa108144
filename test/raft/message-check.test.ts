// Messages no correct peer could send (src/raft/message-check.ts): a faulty or hostile member, or
// a forged message with a member's certificate, gets a refusal with the reason and changes
// nothing; it never stops the replica. The first case is the one the gRPC fuzz run found: a
// follower misled by forged requests told the real leader that it led a later epoch, and the
// leader's core stopped on its own assert.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { encodeMembershipConfig } from '../../src/raft/membership.js';
import { EntryType, type Entry, type Message } from '../../src/raft/types.js';
import { encoder, Group } from './helpers.js';

const voters = ['b1', 'b2', 'b3'];

/** b1 leads epoch 1 with `count` committed one-record entries (offsets 1..count after its LeaderChange at 0). */
function committedGroup(count = 4): Group {
  const group = new Group(voters);
  group.elect('b1');
  for (let index = 0; index < count; index += 1) assert.ok(group.core('b1').propose(encoder.encode(`v${index}`), 1).ok);
  group.replicate(4);
  assert.equal(group.core('b3').highWatermark, group.core('b1').logEndOffset);
  return group;
}

function dataEntry(epoch: number, offset: number, count = 1): Entry {
  return { epoch, offset, count, type: EntryType.Data, payload: encoder.encode(`e${epoch}o${offset}`) };
}

/** What a refused message must leave as it was. */
function picture(group: Group, id: string): unknown {
  const status = group.core(id).status();
  return { role: status.role, epoch: status.epoch, leaderId: status.leaderId, end: group.core(id).logEndOffset, hw: group.core(id).highWatermark };
}

function refusedUntouched(group: Group, message: Message, reason: RegExp): void {
  const before = picture(group, message.to);
  const refused = group.core(message.to).step(message);
  assert.match(refused ?? 'stepped', reason);
  group.drain(message.to);
  assert.deepEqual(picture(group, message.to), before);
}

test('an answer naming this replica leader of a later epoch is refused, and the leader keeps office', () => {
  const group = committedGroup();
  const answer: Message = {
    type: 'FetchResponse',
    from: 'b2',
    to: 'b1',
    epoch: 7,
    error: 'FENCED_EPOCH',
    leaderId: 'b1',
    fetchOffset: 0,
    lastFetchedEpoch: 0,
    requestId: 1,
    entries: [],
    highWatermark: 0,
  };
  refusedUntouched(group, answer, /names this replica leader of epoch 7/);
  assert.equal(group.core('b1').role, 'leader');
});

test('a second leader announcing an epoch that has one is refused, on the leader and on a follower', () => {
  const group = committedGroup();
  refusedUntouched(group, { type: 'BeginQuorumEpoch', from: 'b2', to: 'b1', epoch: 1 }, /which this replica leads/);
  refusedUntouched(group, { type: 'BeginQuorumEpoch', from: 'b3', to: 'b2', epoch: 1 }, /whose leader is b1/);
});

test('fetch answers that break the log rules are refused before anything is appended', () => {
  const group = committedGroup();
  const end = group.core('b2').logEndOffset;
  const base = { type: 'FetchResponse' as const, from: 'b1', to: 'b2', epoch: 1, fetchOffset: end, lastFetchedEpoch: 1, requestId: 99, highWatermark: end };
  refusedUntouched(group, { ...base, entries: [dataEntry(2, end)] }, /entry of epoch 2 in an answer of epoch 1/);
  refusedUntouched(group, { ...base, entries: [dataEntry(1, end), dataEntry(1, end + 2)] }, /not contiguous/);
  refusedUntouched(group, { ...base, entries: [dataEntry(1, end, 0)] }, /malformed entry/);
  // Log Matching: the same (epoch, offset) with another length.
  refusedUntouched(group, { ...base, fetchOffset: 1, entries: [dataEntry(1, 1, 3)] }, /differs from the one this replica holds/);
  const garbage = { ...dataEntry(1, end), type: EntryType.Membership, payload: encoder.encode('{"voters": 3') };
  refusedUntouched(group, { ...base, entries: [garbage] }, /undecodable control entry/);
  refusedUntouched(group, { ...base, entries: [], highWatermark: -1 }, /bad offset, epoch or high watermark/);
});

test('a forged matching fetch from inside an entry is refused; the leader counts nothing for it', () => {
  const group = new Group(voters);
  group.elect('b1');
  assert.ok(group.core('b1').propose(encoder.encode('batch'), 5).ok); // one entry of offsets [1, 6)
  group.replicate(3);
  const fetch: Message = { type: 'FetchRequest', from: 'b2', to: 'b1', epoch: 1, fetchOffset: 3, lastFetchedEpoch: 1, bytesMax: 1 << 20, requestId: 5 };
  refusedUntouched(group, fetch, /inside an entry/);
});

test('a correct membership entry in an answer is not refused', () => {
  const group = committedGroup(1);
  const end = group.core('b2').logEndOffset;
  const membership: Entry = {
    epoch: 1,
    offset: end,
    count: 1,
    type: EntryType.Membership,
    payload: encodeMembershipConfig({ voters, learners: [], endpoints: [] }),
  };
  const answer: Message = {
    type: 'FetchResponse',
    from: 'b1',
    to: 'b2',
    epoch: 1,
    fetchOffset: end,
    lastFetchedEpoch: 1,
    requestId: 1,
    entries: [membership],
    highWatermark: end,
  };
  assert.equal(group.core('b2').step(answer), null);
});

// Any message, with any field values of the right shape, from any member to any member: the core
// steps it or refuses it; it never throws, and its own invariants hold afterwards (step checks
// them). A refusal changes nothing.
test('property: no message a member can send stops a replica', () => {
  const id = fc.constantFrom(...voters);
  const small = fc.integer({ min: -1, max: 12 });
  const entry = fc.record({
    epoch: small,
    offset: small,
    count: fc.integer({ min: 0, max: 3 }),
    type: fc.constantFrom(EntryType.Data, EntryType.LeaderChange, EntryType.Membership),
    payload: fc.constantFrom(encoder.encode('x'), encoder.encode('"b1"'), encodeMembershipConfig({ voters, learners: [], endpoints: [] })),
  });
  const message = fc.oneof(
    fc.record({
      type: fc.constantFrom('PreVoteRequest' as const, 'VoteRequest' as const),
      from: id,
      to: id,
      epoch: small,
      lastEpoch: small,
      lastOffset: small,
    }),
    fc.record({ type: fc.constantFrom('PreVoteResponse' as const, 'VoteResponse' as const), from: id, to: id, epoch: small, granted: fc.boolean() }),
    fc.record({
      type: fc.constantFrom('BeginQuorumEpoch' as const, 'BeginQuorumEpochResponse' as const, 'TimeoutNow' as const),
      from: id,
      to: id,
      epoch: small,
    }),
    fc.record({
      type: fc.constant('FetchRequest' as const),
      from: id,
      to: id,
      epoch: small,
      fetchOffset: small,
      lastFetchedEpoch: small,
      bytesMax: fc.integer({ min: 0, max: 1 << 20 }),
      requestId: fc.nat(5),
      recovering: fc.boolean(),
    }),
    fc.record({
      type: fc.constant('FetchResponse' as const),
      from: id,
      to: id,
      epoch: small,
      error: fc.constantFrom(undefined, 'NOT_LEADER' as const, 'FENCED_EPOCH' as const, 'UNKNOWN_EPOCH' as const, 'NOT_VOTER' as const),
      leaderId: fc.constantFrom(null, ...voters),
      divergingEpoch: fc.option(fc.record({ epoch: small, endOffset: small }), { nil: undefined }),
      snapshotNeeded: fc.option(fc.record({ epoch: small, endOffset: small }), { nil: undefined }),
      fetchOffset: small,
      lastFetchedEpoch: small,
      requestId: fc.nat(5),
      entries: fc.array(entry, { maxLength: 4 }),
      highWatermark: small,
    }),
  );
  fc.assert(
    fc.property(fc.array(message, { minLength: 1, maxLength: 30 }), (messages) => {
      const group = committedGroup(3);
      for (const raw of messages) {
        const forged = raw as Message;
        const before = picture(group, forged.to);
        const refused = group.core(forged.to).step(forged);
        if (refused !== null) assert.deepEqual(picture(group, forged.to), before, `refused (${refused}) yet changed`);
        group.drainAll();
        group.replicate(1);
      }
    }),
    { numRuns: 300 },
  );
});
