// CRC32C in plain JavaScript (byte-wise table). Not used on the hot path: it is the independent
// oracle the tests check the native implementation against, and the benchmark's baseline.
const table = buildTable();

function buildTable(): Uint32Array {
  const result = new Uint32Array(256);
  for (let index = 0; index < 256; index++) {
    let crc = index;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
    result[index] = crc >>> 0;
  }
  return result;
}

export function crc32cJs(bytes: Uint8Array, seed = 0): number {
  let crc = ~seed >>> 0;
  for (let index = 0; index < bytes.length; index++) {
    crc = table[(crc ^ bytes[index]!) & 0xff]! ^ (crc >>> 8);
  }
  return ~crc >>> 0;
}
