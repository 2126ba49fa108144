// The broker's naming rules and key encodings (src/broker/names.ts): each test names the rule it
// checks. Consumer offset keys are stored, so their exact form is checked too.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { InvalidArgumentError } from '../../src/errors.js';
import {
  checkConsumerGroup,
  checkMemberId,
  checkQueueCount,
  checkTopicName,
  consumerGroupPattern,
  decodeOffsetKey,
  offsetKey,
  producerKey,
  queueKey,
  queuesPerTopicMax,
  topicNamePattern,
} from '../../src/broker/names.js';
import { queueKey as queueIndexKey } from '../../src/broker/queue-index.js';
import { producerKey as producerTableKey } from '../../src/broker/producer-table.js';

function refusal(check: () => void): string {
  try {
    check();
  } catch (error) {
    assert.ok(error instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(error)}`);
    return error.message;
  }
  assert.fail('the name was accepted');
}

const topicNames = fc.stringMatching(topicNamePattern);
const consumerGroups = fc.stringMatching(consumerGroupPattern);
const queues = fc.integer({ min: 0, max: queuesPerTopicMax - 1 });

describe('names: naming rules', () => {
  test('a topic name is 1 to 200 letters, digits, ".", "_" or "-", not starting with a punctuation mark', () => {
    for (const name of ['orders', 'a', 'orders.eu-1_b', 'x'.repeat(200)]) checkTopicName(name);
    for (const name of ['', '.orders', '-a', 'bad name!', 'a:b', 'x'.repeat(201), 'a\u0000b']) {
      assert.equal(
        refusal(() => checkTopicName(name)),
        `topic name "${name}" is not valid (letters, digits, '.', '_', '-'; at most 200)`,
      );
    }
  });

  test('a consumer group and a member id may also hold ":"; the refusal names the field', () => {
    checkConsumerGroup('billing:eu.1');
    checkMemberId('host-1:pid.42');
    assert.equal(
      refusal(() => checkConsumerGroup('')),
      'consumer_group "" is not valid',
    );
    assert.equal(
      refusal(() => checkMemberId('a b')),
      'member_id "a b" is not valid',
    );
    assert.match(
      refusal(() => checkConsumerGroup('x'.repeat(201))),
      /^consumer_group "x+" is not valid$/,
    );
  });

  test(`a topic has 1 to ${queuesPerTopicMax} queues`, () => {
    checkQueueCount(1);
    checkQueueCount(queuesPerTopicMax);
    for (const count of [0, -1, 1.5, queuesPerTopicMax + 1, Number.NaN]) {
      assert.equal(
        refusal(() => checkQueueCount(count)),
        `queues must be 1..${queuesPerTopicMax}, got ${count}`,
      );
    }
  });
});

describe('names: key encodings', () => {
  test('the stored form of a consumer offset key: group, topic and queue joined by U+0000', () => {
    assert.equal(offsetKey('billing', 'orders', 3), 'billing\u0000orders\u00003');
  });

  test('decodeOffsetKey returns the parts offsetKey joined, for every valid name', () => {
    fc.assert(
      fc.property(consumerGroups, topicNames, queues, (consumerGroup, topic, queue) => {
        assert.deepEqual(decodeOffsetKey(offsetKey(consumerGroup, topic, queue)), { consumerGroup, topic, queue });
      }),
    );
  });

  test('keys of different tuples differ, even when the texts would concatenate alike', () => {
    const pairs: Array<[string, number]> = [
      ['a', 12],
      ['a1', 2],
      ['a', 1],
    ];
    assert.equal(new Set(pairs.map(([t, q]) => queueKey(t, q))).size, pairs.length);
    const triples: Array<[string, string, number]> = [
      ['g', 'a1', 2],
      ['g', 'a', 12],
      ['ga', '1', 2],
    ];
    assert.equal(new Set(triples.map(([g, t, q]) => offsetKey(g, t, q))).size, triples.length);
    assert.equal(new Set(triples.map(([, t, q], i) => producerKey(i === 2 ? 1 : 11, t, q))).size, triples.length);
  });

  test('a key that offsetKey did not make is a bug (InvariantError), not a consumer offset', () => {
    assert.throws(() => decodeOffsetKey('orders\u00003'), { name: 'InvariantError' });
    assert.throws(() => decodeOffsetKey('g\u0000t\u0000x'), { name: 'InvariantError' });
  });

  test('the copies of queueKey and producerKey still in queue-index.ts and producer-table.ts encode alike (until they go)', () => {
    fc.assert(
      fc.property(topicNames, queues, fc.nat(), (topic, queue, producerId) => {
        assert.equal(queueIndexKey(topic, queue), queueKey(topic, queue));
        assert.equal(producerTableKey(producerId, topic, queue), producerKey(producerId, topic, queue));
      }),
    );
  });
});
