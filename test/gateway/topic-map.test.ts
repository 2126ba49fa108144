// The MQTT ↔ topic/queue mapping (src/gateway/mqtt/topic-map.ts), rule by rule as README "MQTT" states it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { destinationOf, isRefusal, parseFilter, queueOf, sourcesOf } from '../../src/gateway/mqtt/topic-map.js';
import { queueForKey } from '../../src/client/client.js';

test('a topic name is <topic> or <topic>/<queue>; anything else is refused as invalid', () => {
  assert.deepEqual(destinationOf('orders/3'), { topic: 'orders', queue: 3 });
  assert.deepEqual(destinationOf('orders'), { topic: 'orders', queue: null });
  for (const bad of ['orders/3/x', 'orders/03', 'orders/-1', 'orders/x', '$SYS/x', '', '/3', 'or ders', 'orders/99999', 'a/+', '#'])
    assert.ok(isRefusal(destinationOf(bad)), bad);
});

test('the queue: the named one (in range), else the key hash, else the MQTT topic name hash', () => {
  assert.equal(queueOf({ topic: 'orders', queue: 3 }, 4, 'orders/3', null), 3);
  assert.ok(isRefusal(queueOf({ topic: 'orders', queue: 4 }, 4, 'orders/4', null) as never));
  assert.equal(queueOf({ topic: 'orders', queue: null }, 4, 'orders', Buffer.from('k1')), queueForKey(Buffer.from('k1'), 4));
  assert.equal(queueOf({ topic: 'orders', queue: null }, 4, 'orders', null), queueForKey('orders', 4));
  assert.equal(queueOf({ topic: 'orders', queue: null }, 4, 'orders', Buffer.alloc(0)), queueForKey('orders', 4));
});

test('filters: + and # over topics and queues; one level names deliveries after the topic alone', () => {
  const topics = [
    { name: 'orders', queues: 3 },
    { name: 'logs', queues: 2 },
  ];
  const names = (text: string): string[] => {
    const f = parseFilter(text);
    assert.ok(!isRefusal(f), text);
    return sourcesOf(f, topics).map((s) => `${s.topic}:${s.queue}=${s.name}`);
  };
  assert.deepEqual(names('orders/+'), ['orders:0=orders/0', 'orders:1=orders/1', 'orders:2=orders/2']);
  assert.deepEqual(names('orders/#'), names('orders/+'));
  assert.deepEqual(names('orders/2'), ['orders:2=orders/2']);
  assert.deepEqual(names('+/1'), ['orders:1=orders/1', 'logs:1=logs/1']);
  assert.deepEqual(names('#'), ['orders:0=orders/0', 'orders:1=orders/1', 'orders:2=orders/2', 'logs:0=logs/0', 'logs:1=logs/1']);
  assert.deepEqual(names('logs'), ['logs:0=logs', 'logs:1=logs']);
  assert.deepEqual(names('+'), ['orders:0=orders', 'orders:1=orders', 'orders:2=orders', 'logs:0=logs', 'logs:1=logs']);
  assert.deepEqual(names('orders/7'), []);
  assert.deepEqual(names('nothing/+'), []);
});

test('filters refused: more levels, partial wildcards, # not last, shared subscriptions (unsupported)', () => {
  for (const bad of ['a/b/c', 'ord+', 'orders/x', '#/1', 'a/#/b', '', '+/+/+'])
    assert.deepEqual((parseFilter(bad) as { refused: string }).refused, 'invalid', bad);
  assert.deepEqual((parseFilter('$share/g/orders/+') as { refused: string }).refused, 'unsupported');
});
