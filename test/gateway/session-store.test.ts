// Sessions of one MQTT listener (src/gateway/mqtt/session-store.ts) and the outgoing QoS 1 window.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SessionStore, delayedWillBytesMax } from '../../src/gateway/mqtt/session-store.js';
import { OutgoingWindow } from '../../src/gateway/mqtt/window.js';
import { waitFor } from '../integration/cluster-harness.js';

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

test('a taken-over persistent session hands its subscriptions to the connection that took it (its takeOver closes it at once)', () => {
  const store = new SessionStore(10);
  const first = { takeOver: () => store.release('c1', first, new Map([['a/+', 1]]), 60_000) };
  const second = { takeOver: () => undefined };
  store.claim('c1', first);
  store.claim('c1', second);
  assert.deepEqual([...(store.take('c1') ?? [])], [['a/+', 1]]);
  assert.equal(store.liveCount, 1);
  // The second is the live session: its own release stores its subscriptions.
  store.release('c1', second, new Map([['b', 0]]), 60_000);
  assert.deepEqual([...(store.take('c1') ?? [])], [['b', 0]]);
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

test('delayed wills: published after the delay; a resumed session cancels, a clean start publishes at once; stopping publishes the rest', async () => {
  const store = new SessionStore(10);
  const published: string[] = [];
  const will = (name: string) => async (): Promise<void> => {
    published.push(name);
  };
  const s = { takeOver: () => undefined };
  store.delayWill('timed', 30, 10, will('timed'));
  store.delayWill('resumed', 30, 10, will('resumed'));
  store.delayWill('restarted', 60_000, 10, will('restarted'));
  store.delayWill('stopped', 60_000, 10, will('stopped'));
  assert.equal(store.delayedWillCount, 4);
  store.claim('resumed', s, false);
  store.claim('restarted', s, true);
  assert.deepEqual(published, ['restarted'], 'a clean start ends the old session: its will goes now');
  await waitFor('the timed will', 5000, () => (published.includes('timed') ? true : undefined), 5);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.deepEqual(published, ['restarted', 'timed'], 'the resumed session sent no will (its delay was the same)');
  // A second will for one id: the first goes at once (its session ended), the second waits.
  store.delayWill('twice', 60_000, 10, will('twice-1'));
  store.delayWill('twice', 60_000, 10, will('twice-2'));
  assert.deepEqual(published.slice(2), ['twice-1']);
  await store.publishDelayedWills();
  assert.deepEqual(published.slice(2).sort(), ['stopped', 'twice-1', 'twice-2']);
  assert.equal(store.delayedWillCount, 0);
});

test('delayed wills are bounded in count and bytes: past the bound the oldest goes early, none is lost', async () => {
  const store = new SessionStore(3);
  const published: string[] = [];
  const will = (name: string) => async (): Promise<void> => {
    published.push(name);
  };
  for (const id of ['a', 'b', 'c', 'd']) store.delayWill(id, 60_000, 100, will(id));
  assert.deepEqual(published, ['a'], 'a fourth will of three allowed: the oldest went');
  assert.equal(store.delayedWillCount, 3);
  store.delayWill('huge', 60_000, delayedWillBytesMax, will('huge'));
  assert.deepEqual(published, ['a', 'b', 'c', 'd'], 'room for the bytes of a large will: every older one went');
  assert.equal(store.delayedWillCount, 1);
  await store.publishDelayedWills();
  assert.deepEqual(published, ['a', 'b', 'c', 'd', 'huge']);
});
