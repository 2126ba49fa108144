// An MQTT PUBLISH ↔ a stored message (README "MQTT"): MQTT 5 user properties are message headers
// (the `key` property is the message key), the retain flag and a QoS 0 publish are headers of the
// gateway's own, and the content type is a header. Pure functions: no I/O.
import type { IPublishPacket, UserProperties } from 'mqtt-packet';
import type { ReceivedMessage } from '../../client/client.js';
import { traceparentHeader, tracestateHeader } from '../../observe/message-trace.js';

/** The MQTT 5 user property whose value becomes the stored message's key. */
export const keyProperty = 'key';
/** A message stored with this header was published with MQTT's retain flag. */
export const retainHeader = 'mqtt-retain';
/**
 * A message stored with this header (value `0`) was published at QoS 0. Only QoS 0 is marked: a
 * message without it (QoS 1, or from another protocol, all stored at quorum) counts as QoS 1.
 */
export const publishedQosHeader = 'mqtt-qos';
const contentTypeHeader = 'content-type';
const traceContextHeaders: ReadonlySet<string> = new Set([traceparentHeader, tracestateHeader]);
/** Headers the gateway sets itself: a client's user property of that name is not stored. */
const gatewayHeaders: ReadonlySet<string> = new Set([retainHeader, publishedQosHeader, contentTypeHeader]);

/** The headers and key of a PUBLISH (or a will) as they are stored. */
export function headersOf(
  user: UserProperties | undefined,
  publish: { retain: boolean; qos: 0 | 1; contentType: string | undefined },
): { headers: Record<string, string>; key: Buffer | null } {
  const headers: Record<string, string> = {};
  let key: Buffer | null = null;
  for (const [name, value] of Object.entries(user ?? {})) {
    const text = Array.isArray(value) ? value[value.length - 1]! : value;
    if (name === keyProperty) key = Buffer.from(text);
    else if (!gatewayHeaders.has(name)) headers[name] = text;
  }
  if (publish.retain) headers[retainHeader] = '1';
  if (publish.qos === 0) headers[publishedQosHeader] = '0';
  if (publish.contentType !== undefined) headers[contentTypeHeader] = publish.contentType;
  return { headers, key };
}

/**
 * A stored message's headers as MQTT 5 user properties (traceparent among them), and its key;
 * `traceHeaders` (the gateway's delivery span's context, when tracing is on) replace the stored ones.
 */
export function propertiesOf(message: ReceivedMessage, traceHeaders: Readonly<Record<string, string>> = {}): IPublishPacket['properties'] | undefined {
  const user: Record<string, string> = {};
  const replaced = Object.keys(traceHeaders).length > 0;
  for (const [name, value] of Object.entries(message.headers))
    if (!gatewayHeaders.has(name) && !(replaced && traceContextHeaders.has(name))) user[name] = value.toString('utf8');
  Object.assign(user, traceHeaders);
  if (message.key) user[keyProperty] = message.key.toString('utf8');
  const contentType = message.headers[contentTypeHeader]?.toString('utf8');
  if (Object.keys(user).length === 0 && contentType === undefined) return undefined;
  return { ...(Object.keys(user).length > 0 ? { userProperties: user } : {}), ...(contentType !== undefined ? { contentType } : {}) };
}

/**
 * The QoS a message goes out with: the lower of the QoS it was published with and the QoS the
 * subscription was granted (3.1.1 and 5.0 §3.8.4), so a QoS 0 publish is never upgraded.
 */
export function deliveryQos(granted: 0 | 1, message: ReceivedMessage): 0 | 1 {
  return message.headers[publishedQosHeader]?.toString('latin1') === '0' ? 0 : granted;
}
