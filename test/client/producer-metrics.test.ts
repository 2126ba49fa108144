// The producer's metrics (src/client/producer.ts): nothing on prom-client's global registry, the
// drop counter only on a registry the application hands over, stats() always. No broker is
// contacted: a producer connects on its first send.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Counter, Gauge, Registry, register } from 'prom-client';
import { Producer, droppedMetricName } from '../../src/client/producer.js';
import { InvalidArgumentError } from '../../src/errors.js';

const brokers = ['127.0.0.1:1'];

describe('producer metrics', () => {
  test('by default nothing is registered on the global registry, and stats() counts from zero', async () => {
    const producer = new Producer({ brokers });
    assert.equal(register.getSingleMetric(droppedMetricName), undefined);
    assert.deepEqual(producer.stats(), { droppedMessages: 0 });
    await producer.close(100);
  });

  test('metrics.registry gets the drop counter; producers on one registry share it', async () => {
    const registry = new Registry();
    const first = new Producer({ brokers, metrics: { registry } });
    const second = new Producer({ brokers, metrics: { registry } });
    assert.ok(registry.getSingleMetric(droppedMetricName) instanceof Counter);
    assert.equal(registry.getMetricsAsArray().length, 1);
    assert.equal(register.getSingleMetric(droppedMetricName), undefined);
    await first.close(100);
    await second.close(100);
  });

  test('a registry holding another kind of metric under that name is refused, naming the option', () => {
    const registry = new Registry();
    new Gauge({ name: droppedMetricName, help: 'not a counter', registers: [registry] });
    assert.throws(
      () => new Producer({ brokers, metrics: { registry } }),
      (error: Error) => error instanceof InvalidArgumentError && /^metrics\.registry/.test(error.message),
    );
  });
});
