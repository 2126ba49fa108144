// What the scripted-transport tests of the SDK answer DescribeCluster with: one group, g1, whose
// only broker b1 (at a1:1) leads it.
import type { GroupInfo } from '../../src/protocol/messages.js';

export const scriptedBrokerAddress = 'a1:1';

export function scriptedGroup(): GroupInfo {
  return {
    id: 'g1',
    leaderId: 'b1',
    epoch: 1,
    highWatermark: 0,
    advice: null,
    replicas: [{ id: 'b1', address: scriptedBrokerAddress, role: 'leader', endOffset: 0, lagOffsets: 0, lagMs: 0, lastFetchAgeMs: 0, reachable: true }],
  };
}
