// The reason codes the gateway answers with (MQTT 5.0 §2.4), and their MQTT 3.1.1 CONNACK
// return codes where 3.1.1 has one (3.1.1 has none for PUBACK or DISCONNECT: the connection is
// closed instead; its SUBACK has only 0x80 for a failure).
export const reason = {
  success: 0x00,
  grantedQos1: 0x01,
  unspecifiedError: 0x80,
  malformedPacket: 0x81,
  protocolError: 0x82,
  implementationSpecificError: 0x83,
  unsupportedProtocolVersion: 0x84,
  clientIdentifierNotValid: 0x85,
  badUserNameOrPassword: 0x86,
  notAuthorized: 0x87,
  serverUnavailable: 0x88,
  serverBusy: 0x89,
  sessionTakenOver: 0x8e,
  topicFilterInvalid: 0x8f,
  topicNameInvalid: 0x90,
  keepAliveTimeout: 0x8d,
  receiveMaximumExceeded: 0x93,
  packetTooLarge: 0x95,
  qosNotSupported: 0x9b,
  sharedSubscriptionsNotSupported: 0x9e,
  serverShuttingDown: 0x8b,
} as const;

/** MQTT 3.1.1 CONNACK return codes (§3.2.2.3) for the 5.0 reasons a CONNACK may carry. */
export function connackCode311(code: number): number {
  if (code === reason.success) return 0;
  if (code === reason.unsupportedProtocolVersion) return 1;
  if (code === reason.clientIdentifierNotValid) return 2;
  if (code === reason.serverUnavailable || code === reason.serverBusy) return 3;
  if (code === reason.badUserNameOrPassword) return 4;
  return 5; // not authorized
}
