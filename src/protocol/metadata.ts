// The cluster metadata (issue 14.1) between its wire form and the plain form every side uses, once
// for the broker's forwarder and the SDK: 64-bit numbers arrive as strings or Longs, absent
// repeated fields as nothing.
import type { ClusterMetadata, MetadataGroup, MetadataTopic } from './messages.js';

type WireLike = Record<string, unknown> | null | undefined;

export function metadataFromWire(wire: WireLike): ClusterMetadata {
  const w = wire ?? {};
  return {
    version: Number(w.version ?? 0),
    groups: ((w.groups as WireLike[] | undefined) ?? []).map(groupFromWire),
    topics: ((w.topics as WireLike[] | undefined) ?? []).map(topicFromWire),
  };
}

function groupFromWire(wire: WireLike): MetadataGroup {
  const w = wire ?? {};
  return {
    id: String(w.id ?? ''),
    brokers: ((w.brokers as WireLike[] | undefined) ?? []).map((b) => ({
      id: String(b?.id ?? ''),
      host: String(b?.host ?? ''),
      clientPort: Number(b?.clientPort ?? 0),
    })),
  };
}

function topicFromWire(wire: WireLike): MetadataTopic {
  const w = wire ?? {};
  return {
    name: String(w.name ?? ''),
    createdMs: Number(w.createdMs ?? 0),
    placement: ((w.placement as unknown[] | undefined) ?? []).map(String),
    legacy: w.legacy === true,
  };
}

/** The wire form (the plain one with every field present). */
export function metadataToWire(metadata: {
  version: number;
  groups: readonly MetadataGroup[];
  topics: readonly { name: string; createdMs: number; placement: readonly string[]; legacy?: boolean }[];
}): ClusterMetadata {
  return {
    version: metadata.version,
    groups: metadata.groups.map((g) => ({ id: g.id, brokers: g.brokers.map((b) => ({ id: b.id, host: b.host, clientPort: b.clientPort })) })),
    topics: metadata.topics.map((t) => ({ name: t.name, createdMs: t.createdMs, placement: [...t.placement], legacy: t.legacy === true })),
  };
}
