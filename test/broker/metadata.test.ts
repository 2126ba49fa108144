// Cluster metadata (issue 14.1): what each change does, placement by load, the checks of a
// document read from the wire or a store, and the commands that carry it; a property test of the
// apply against a plain model.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CommandKind, CommandFormatError, decodeCommand, encodeCommand } from '../../src/broker/commands.js';
import {
  applyMetadataChange,
  checkMetadata,
  emptyMetadata,
  grows,
  legacyPlacement,
  MetadataError,
  placeQueues,
  topicOf,
  type ClusterMetadata,
  type MetadataChange,
} from '../../src/broker/metadata.js';

const g = (id: string, ...brokers: string[]) => ({ id, brokers: brokers.map((b, i) => ({ id: b, host: '127.0.0.1', clientPort: 7100 + i })) });

function apply(changes: MetadataChange[], from: ClusterMetadata = emptyMetadata): ClusterMetadata {
  return changes.reduce((metadata, change, index) => applyMetadataChange(metadata, change, from.version + index), from);
}

describe('metadata changes', () => {
  const bootstrap: MetadataChange = {
    change: 'bootstrap',
    groups: [g('g1', 'b1'), g('g2', 'b4')],
    topics: [{ name: 'old', createdMs: 5, placement: legacyPlacement([{ id: 'g1' }, { id: 'g2' }], 3), legacy: true }],
  };

  test('bootstrap, add a group, create, grow and delete a topic; the version is one past the last offset', () => {
    const created = apply([
      bootstrap,
      { change: 'add-group', group: g('g3', 'b7') },
      { change: 'place-topic', topic: { name: 't', createdMs: 9, placement: ['g3'] } },
    ]);
    assert.equal(created.version, 3);
    assert.deepEqual(
      created.groups.map((x) => x.id),
      ['g1', 'g2', 'g3'],
    );
    assert.deepEqual(topicOf(created, 'old')?.placement, ['g1', 'g2', 'g1']);
    assert.equal(topicOf(created, 'old')?.legacy, true);
    const grown = applyMetadataChange(created, { change: 'place-topic', topic: { name: 't', createdMs: 9, placement: ['g3', 'g1'] } }, 3);
    assert.deepEqual(topicOf(grown, 't')?.placement, ['g3', 'g1']);
    const deleted = applyMetadataChange(grown, { change: 'delete-topic', name: 't', createdMs: 9 }, 4);
    assert.equal(topicOf(deleted, 't'), undefined);
    assert.equal(deleted.version, 5);
  });

  test('a change that no longer fits changes nothing but the version (a retried proposal); a replayed entry changes nothing at all', () => {
    const base = apply([bootstrap, { change: 'place-topic', topic: { name: 't', createdMs: 9, placement: ['g1', 'g2'] } }]);
    const cases: MetadataChange[] = [
      bootstrap, // a second bootstrap
      { change: 'add-group', group: g('g2', 'b9') }, // a group id taken
      { change: 'place-topic', topic: { name: 't', createdMs: 10, placement: ['g1'] } }, // another incarnation of an existing name
      { change: 'place-topic', topic: { name: 't', createdMs: 9, placement: ['g2', 'g2', 'g1'] } }, // moves queue 0: no growth
      { change: 'delete-topic', name: 't', createdMs: 8 }, // an older incarnation
    ];
    for (const change of cases) {
      const after = applyMetadataChange(base, change, 7);
      assert.deepEqual({ ...after, version: base.version }, base, JSON.stringify(change));
      assert.equal(after.version, 8);
    }
    assert.equal(applyMetadataChange(base, { change: 'delete-topic', name: 't', createdMs: 9 }, 1), base, 'an entry below the version is a replay');
  });

  test('grows: the same incarnation with more queues, the old ones where they were', () => {
    const t = { name: 't', createdMs: 1, placement: ['g1', 'g2'] };
    assert.equal(grows(t, { ...t, placement: ['g1', 'g2', 'g3'] }), true);
    assert.equal(grows(t, { ...t, placement: ['g1', 'g2'] }), false);
    assert.equal(grows(t, { ...t, placement: ['g2', 'g2', 'g3'] }), false);
    assert.equal(grows(t, { ...t, createdMs: 2, placement: ['g1', 'g2', 'g3'] }), false);
  });
});

describe('placement by load', () => {
  const metadata = apply([{ change: 'bootstrap', groups: [g('g1', 'b1'), g('g2', 'b4'), g('g3', 'b7')], topics: [] }]);

  test('a new cluster deals queues over its groups in order', () => {
    assert.deepEqual(placeQueues(metadata, 5), ['g1', 'g2', 'g3', 'g1', 'g2']);
  });

  test('the group holding the fewest queues first, then the one storing less, then group order', () => {
    const loaded = applyMetadataChange(metadata, { change: 'place-topic', topic: { name: 'a', createdMs: 1, placement: ['g1', 'g1', 'g2'] } }, 1);
    assert.deepEqual(placeQueues(loaded, 3), ['g3', 'g2', 'g3']);
    const stored = (group: string) => ({ g1: 5, g2: 1, g3: 1 })[group] ?? 0;
    assert.deepEqual(placeQueues(metadata, 3, stored), ['g2', 'g3', 'g1']);
  });

  test('no group registered: a clear error', () => {
    assert.throws(
      () => placeQueues(emptyMetadata, 1),
      (error: Error) => error instanceof MetadataError && /no group is registered/.test(error.message),
    );
  });

  test('property: placed queues keep the groups within one queue of each other when they start equal', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 200 }), (groups, queues) => {
        const m = apply([{ change: 'bootstrap', groups: Array.from({ length: groups }, (_, i) => g(`g${i + 1}`, `b${i + 1}`)), topics: [] }]);
        const counts = new Map<string, number>();
        for (const id of placeQueues(m, queues)) counts.set(id, (counts.get(id) ?? 0) + 1);
        const values = m.groups.map((x) => counts.get(x.id) ?? 0);
        return Math.max(...values) - Math.min(...values) <= 1;
      }),
    );
  });
});

describe('metadata read from outside', () => {
  const whole = { version: 3, groups: [g('g1', 'b1')], topics: [{ name: 't', createdMs: 1, placement: ['g1'] }] };

  test('a whole document is read back as it was', () => {
    assert.deepEqual(checkMetadata(JSON.parse(JSON.stringify(whole))), whole);
  });

  const bad: Array<[string, unknown, RegExp]> = [
    ['not an object', [], /metadata is not an object/],
    ['a group twice', { ...whole, groups: [g('g1', 'b1'), g('g1', 'b2')] }, /group g1 appears twice/],
    ['a topic twice', { ...whole, topics: [whole.topics[0], whole.topics[0]] }, /topic "t" appears twice/],
    ['a queue on an unknown group', { ...whole, topics: [{ name: 't', createdMs: 1, placement: ['g9'] }] }, /places a queue on group g9/],
    ['a bad topic name', { ...whole, topics: [{ name: 'a b', createdMs: 1, placement: ['g1'] }] }, /topic/],
    ['no queue', { ...whole, topics: [{ name: 't', createdMs: 1, placement: [] }] }, /has 0 queues/],
    ['a group without brokers', { ...whole, groups: [{ id: 'g1', brokers: [] }] }, /group g1 has no broker/],
    ['a port out of range', { ...whole, groups: [{ id: 'g1', brokers: [{ id: 'b1', host: 'h', clientPort: 70000 }] }] }, /port 70000 is out of range/],
    ['a negative version', { ...whole, version: -1 }, /version is not a non-negative integer/],
  ];
  for (const [what, value, message] of bad) {
    test(`refused: ${what}`, () => {
      assert.throws(
        () => checkMetadata(value),
        (error: Error) => error instanceof MetadataError && message.test(error.message),
      );
    });
  }
});

describe('metadata and grow-topic commands', () => {
  test('encode and decode round trip', () => {
    const change: MetadataChange = { change: 'place-topic', topic: { name: 'orders', createdMs: 42, placement: ['g1', 'g2'] } };
    assert.deepEqual(decodeCommand(encodeCommand({ kind: CommandKind.Metadata, change })), { kind: CommandKind.Metadata, change });
    const grow = { kind: CommandKind.GrowTopic as const, name: 'orders', queues: 6, createdMs: 42 };
    assert.deepEqual(decodeCommand(encodeCommand(grow)), grow);
  });

  test('a metadata command with a bad body is a CommandFormatError naming the problem', () => {
    const payload = Buffer.concat([Buffer.from([CommandKind.Metadata]), Buffer.from('{"change":"rename"}')]);
    assert.throws(
      () => decodeCommand(payload),
      (error: Error) => error instanceof CommandFormatError && /unknown metadata change "rename"/.test(error.message),
    );
    const truncated = Buffer.concat([Buffer.from([CommandKind.Metadata]), Buffer.from('{"change":')]);
    assert.throws(() => decodeCommand(truncated), CommandFormatError);
  });
});

describe('property: the apply against a model', () => {
  // The model: a map by name, a list of groups; a change applies when it fits, as in the rules
  // of applyMetadataChange, written here the plain way.
  const changeArb: fc.Arbitrary<MetadataChange> = fc.oneof(
    fc.record({ change: fc.constant('add-group' as const), group: fc.constantFrom('g1', 'g2', 'g3').map((id) => g(id, `${id}b`)) }),
    fc.record({
      change: fc.constant('place-topic' as const),
      topic: fc.record({
        name: fc.constantFrom('a', 'b'),
        createdMs: fc.integer({ min: 1, max: 3 }),
        placement: fc.array(fc.constantFrom('g1', 'g2'), { minLength: 1, maxLength: 4 }),
      }),
    }),
    fc.record({ change: fc.constant('delete-topic' as const), name: fc.constantFrom('a', 'b'), createdMs: fc.integer({ min: 1, max: 3 }) }),
  );

  test('every change of a random sequence does what the model says; versions only rise', () => {
    fc.assert(
      fc.property(fc.array(changeArb, { maxLength: 30 }), (changes) => {
        let metadata = applyMetadataChange(emptyMetadata, { change: 'bootstrap', groups: [g('g1', 'x')], topics: [] }, 0);
        const groups = new Set(['g1']);
        const topics = new Map<string, { createdMs: number; placement: string[] }>();
        changes.forEach((change, index) => {
          const before = metadata.version;
          metadata = applyMetadataChange(metadata, change, index + 1);
          assert.equal(metadata.version, index + 2);
          assert.ok(metadata.version > before);
          if (change.change === 'add-group') groups.add(change.group.id);
          if (change.change === 'place-topic') {
            const known = topics.get(change.topic.name);
            const fits =
              !known ||
              (known.createdMs === change.topic.createdMs &&
                change.topic.placement.length > known.placement.length &&
                known.placement.every((x, q) => change.topic.placement[q] === x));
            if (fits) topics.set(change.topic.name, { createdMs: change.topic.createdMs, placement: [...change.topic.placement] });
          }
          if (change.change === 'delete-topic' && topics.get(change.name)?.createdMs === change.createdMs) topics.delete(change.name);
        });
        assert.deepEqual(new Set(metadata.groups.map((x) => x.id)), groups);
        assert.deepEqual(new Map(metadata.topics.map((t) => [t.name, { createdMs: t.createdMs, placement: t.placement }])), topics);
      }),
      { numRuns: 300 },
    );
  });
});
