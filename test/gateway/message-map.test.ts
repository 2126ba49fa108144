// A PUBLISH ↔ a stored message (src/gateway/mqtt/message-map.ts): user properties as headers and
// back, the gateway's own headers (retain, QoS 0) neither forged by a client nor shown to one, and
// the QoS of a delivery (3.1.1 and 5.0 §3.8.4: the lower of the published and the granted QoS).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ReceivedMessage } from '../../src/client/client.js';
import { deliveryQos, headersOf, propertiesOf, publishedQosHeader, retainHeader } from '../../src/gateway/mqtt/message-map.js';

function stored(headers: Record<string, string>, key: string | null = null): ReceivedMessage {
  return {
    offset: 0,
    timestampMs: 0,
    key: key === null ? null : Buffer.from(key),
    body: Buffer.from('x'),
    headers: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, Buffer.from(v)])),
  };
}

test('user properties become headers, `key` the message key; retain and QoS 0 are marked by the gateway', () => {
  const user = { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', key: 'k1', app: ['a', 'b'] };
  assert.deepEqual(headersOf(user, { retain: false, qos: 1, contentType: undefined }), {
    headers: { traceparent: user.traceparent, app: 'b' },
    key: Buffer.from('k1'),
  });
  assert.deepEqual(headersOf(undefined, { retain: true, qos: 0, contentType: 'text/plain' }).headers, {
    [retainHeader]: '1',
    [publishedQosHeader]: '0',
    'content-type': 'text/plain',
  });
});

test("a client's user property cannot forge the gateway's headers", () => {
  const { headers } = headersOf({ [retainHeader]: '1', [publishedQosHeader]: '0', 'content-type': 'x' }, { retain: false, qos: 1, contentType: undefined });
  assert.deepEqual(headers, {});
});

test('on delivery, headers are user properties again, without the gateway headers', () => {
  const message = stored({ traceparent: 'tp', [retainHeader]: '1', [publishedQosHeader]: '0', 'content-type': 'text/plain' }, 'k1');
  assert.deepEqual(propertiesOf(message), { userProperties: { traceparent: 'tp', key: 'k1' }, contentType: 'text/plain' });
  assert.equal(propertiesOf(stored({ [retainHeader]: '1', [publishedQosHeader]: '0' })), undefined);
});

test('a delivery goes out at the lower of the published QoS and the granted QoS', () => {
  const atMostOnce = stored({ [publishedQosHeader]: '0' });
  const atLeastOnce = stored({});
  assert.equal(deliveryQos(0, atLeastOnce), 0);
  assert.equal(deliveryQos(1, atLeastOnce), 1);
  assert.equal(deliveryQos(0, atMostOnce), 0);
  assert.equal(deliveryQos(1, atMostOnce), 0);
});

test("with tracing on, the delivery span's context replaces the stored one; other properties stay", () => {
  const message = stored({ traceparent: 'stored-parent', tracestate: 'stored-state', app: 'x' });
  assert.deepEqual(propertiesOf(message, { traceparent: 'delivery-parent' }), { userProperties: { app: 'x', traceparent: 'delivery-parent' } });
  assert.deepEqual(propertiesOf(message), { userProperties: { traceparent: 'stored-parent', tracestate: 'stored-state', app: 'x' } });
});
