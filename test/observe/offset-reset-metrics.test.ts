// The broker's report of consumer groups moved past retention (src/broker/consume.ts calls
// BrokerObserver.consumerOffsetReset) becomes two counters per consumer group and topic.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BrokerMetrics } from '../../src/observe/metrics.js';

test('consumer offset resets and the messages they skipped are counted per consumer group and topic', async () => {
  const metrics = new BrokerMetrics({ broker: 'b1', group: 'g1' });
  metrics.consumerOffsetReset('billing', 'orders', 0, 90);
  metrics.consumerOffsetReset('billing', 'orders', 3, 10);
  metrics.consumerOffsetReset('audit', 'orders', 0, 5);
  const text = await metrics.registry.metrics();
  const value = (name: string, group: string): number => {
    const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(`consumer_group="${group}"`) && l.includes('topic="orders"'));
    return Number(line?.split(' ').pop() ?? Number.NaN);
  };
  assert.equal(value('mamba_consumer_offset_resets_total', 'billing'), 2);
  assert.equal(value('mamba_consumer_skipped_messages_total', 'billing'), 100);
  assert.equal(value('mamba_consumer_offset_resets_total', 'audit'), 1);
  assert.equal(value('mamba_consumer_skipped_messages_total', 'audit'), 5);
});
