// Sessions of one MQTT listener (src/gateway/mqtt/session-store.ts) and the outgoing QoS 1 window.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SessionStore } from '../../src/gateway/mqtt/session-store.js';
import { OutgoingWindow } from '../../src/gateway/mqtt/window.js';

test('a second connection with the same client id takes the session over (MQTT-3.1.4-2)', () => {
  const store = new SessionStore(10);
  const taken: string[] = [];
  const first = { takeOver: () => taken.push('first') };
  const second = { takeOver: () => taken.push('second') };
  store.claim('c1', first);
  store.claim('c1', second);
  assert.deepEqual(taken, ['first']);
  // The first connection ending later does not release the second's session.
  store.release('c1', first, new Map([['a/+', 1]]), 60_000);
  assert.equal(store.liveCount, 1);
  assert.equal(store.storedCount, 0);
});

test('a persistent session keeps its subscriptions until its expiry; a clean one keeps nothing', () => {
  let nowMs = 1000;
  const store = new SessionStore(10, () => nowMs);
  const s = { takeOver: () => undefined };
  store.claim('p', s);
  store.release('p', s, new Map([['orders/#', 1]]), 5000);
  store.claim('c', s);
  store.release('c', s, new Map([['orders/#', 1]]), 0);
  assert.equal(store.storedCount, 1);
  assert.deepEqual([...(store.take('p') ?? [])], [['orders/#', 1]]);
  assert.equal(store.take('p'), null, 'taken once');
  store.claim('p', s);
  store.release('p', s, new Map([['x', 0]]), 5000);
  nowMs += 5000;
  assert.equal(store.take('p'), null, 'expired');
});

test('stored sessions are bounded: past the bound the one closest to expiry goes', () => {
  const store = new SessionStore(2, () => 0);
  const s = { takeOver: () => undefined };
  for (const [id, expiry] of [
    ['a', 3000],
    ['b', 1000],
    ['c', 2000],
  ] as const) {
    store.claim(id, s);
    store.release(id, s, new Map([['t', 1]]), expiry);
  }
  assert.equal(store.storedCount, 2);
  assert.equal(store.take('b'), null);
  assert.ok(store.take('a') && store.take('c'));
});

test('the QoS 1 window: bounded slots, ids unique while in flight, closing answers false to every waiter', async () => {
  const window = new OutgoingWindow(2);
  const a = (await window.take())!;
  const b = (await window.take())!;
  assert.notEqual(a.packetId, b.packetId);
  let settled = false;
  const waiting = window.take().then((slot) => {
    settled = true;
    return slot;
  });
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(settled, false, 'a third waits for a slot');
  assert.equal(window.acknowledge(a.packetId), true);
  assert.equal(window.acknowledge(a.packetId), false, 'an unknown id is ignored');
  const third = await waiting;
  assert.ok(third && third.packetId !== b.packetId);
  assert.equal(await a.acked, true);
  window.close();
  assert.equal(await b.acked, false);
  assert.equal(await window.take(), null);
});
