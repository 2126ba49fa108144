// The data directory's format record (issue 13.3): written whole, checksummed, refused for the
// wrong broker, and formatting only an unused directory; formatNewGroups formats a group only
// while none of its seed brokers has data.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkDirectoryFormat, dataDirectoryUnused, formatDataDirectory, FormatError, formatFileName, readDirectoryFormat } from '../../src/replica/format.js';
import { parseClusterConfig } from '../../src/config/cluster.js';
import { describeBrokerDirectory, formatBrokerDirectory, formatNewGroups } from '../../src/rpc/storage-format.js';

function freshDir(): string {
  return fs.mkdtempSync(join(tmpdir(), 'mamba-format-'));
}

const identity = { cluster: 'c1', group: 'g1', brokerId: 'b1' };

test('format: written once, read back, and a second format is refused naming the first', () => {
  const dir = join(freshDir(), 'b1');
  try {
    assert.equal(readDirectoryFormat(dir), null);
    const made = formatDataDirectory(dir, identity, 1234);
    assert.deepEqual(readDirectoryFormat(dir), made);
    assert.equal(made.formattedAtMs, 1234);
    assert.match(made.directoryId, /^[0-9a-f-]{36}$/);
    assert.notEqual(formatDataDirectory(join(dir, '..', 'b2'), { ...identity, brokerId: 'b2' }).directoryId, made.directoryId, 'a new id per format');
    assert.throws(
      () => formatDataDirectory(dir, identity),
      (error: Error) => error instanceof FormatError && /already formatted for broker b1/.test(error.message),
    );
    assert.deepEqual(
      fs.readdirSync(dir).filter((n) => n !== formatFileName),
      [],
      'no temporary file left',
    );
  } finally {
    fs.rmSync(join(dir, '..'), { recursive: true, force: true });
  }
});

test('format: a directory that holds data is refused; a lock file alone is no data', () => {
  const dir = freshDir();
  try {
    fs.writeFileSync(join(dir, 'LOCK'), '123\n');
    assert.equal(dataDirectoryUnused(dir), true);
    fs.mkdirSync(join(dir, 'log'));
    assert.equal(dataDirectoryUnused(dir), false);
    assert.throws(
      () => formatDataDirectory(dir, identity),
      (error: Error) => error instanceof FormatError && /holds data/.test(error.message),
    );
    assert.equal(readDirectoryFormat(dir), null, 'nothing written');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('format: a damaged record fails its checksum (any field changed), and is never taken for "not formatted"', () => {
  const dir = freshDir();
  try {
    formatDataDirectory(dir, identity);
    const path = join(dir, formatFileName);
    const whole = fs.readFileSync(path, 'utf8');
    for (const [from, to] of [
      ['"b1"', '"b2"'],
      ['"g1"', '"g9"'],
      ['"c1"', '"c2"'],
    ] as const) {
      fs.writeFileSync(path, whole.replace(from, to));
      assert.throws(
        () => readDirectoryFormat(dir),
        (error: Error) => error instanceof FormatError && /fails its checksum/.test(error.message),
        from,
      );
    }
    fs.writeFileSync(path, whole.slice(0, whole.length / 2));
    assert.throws(
      () => readDirectoryFormat(dir),
      (error: Error) => error instanceof FormatError && /not valid JSON/.test(error.message),
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('format: checkDirectoryFormat names what differs', () => {
  const format = { version: 1, ...identity, directoryId: 'x', formattedAtMs: 0 };
  checkDirectoryFormat('d', format, { brokerId: 'b1', cluster: 'c1', group: 'g1' });
  assert.throws(() => checkDirectoryFormat('d', format, { brokerId: 'b3' }), /formatted for broker b1, not b3/);
  assert.throws(() => checkDirectoryFormat('d', format, { brokerId: 'b1', group: 'g2' }), /formatted for group g1, not g2/);
  assert.throws(() => checkDirectoryFormat('d', format, { brokerId: 'b1', cluster: 'other' }), /formatted for cluster c1, not other/);
});

function cluster(dir: string) {
  const text = [
    'cluster: c1',
    `dataDir: ${join(dir, 'data')}`,
    'groups:',
    '  - id: g1',
    '    brokers:',
    '      - { id: b1, host: 127.0.0.1, clientPort: 7101, peerPort: 7201, metricsPort: 7301 }',
    '      - { id: b2, host: 127.0.0.1, clientPort: 7102, peerPort: 7202, metricsPort: 7302 }',
    '      - { id: b3, host: 127.0.0.1, clientPort: 7103, peerPort: 7203, metricsPort: 7303 }',
    '      - { id: b7, host: 127.0.0.1, clientPort: 7107, peerPort: 7207, metricsPort: 7307, joining: true }',
    '  - id: g2',
    '    brokers:',
    '      - { id: b4, host: 127.0.0.1, clientPort: 7104, peerPort: 7204, metricsPort: 7304 }',
    '      - { id: b5, host: 127.0.0.1, clientPort: 7105, peerPort: 7205, metricsPort: 7305 }',
    '      - { id: b6, host: 127.0.0.1, clientPort: 7106, peerPort: 7206, metricsPort: 7306 }',
  ].join('\n');
  return parseClusterConfig(text, 'c1.yaml', dir);
}

test('formatNewGroups: a new group is formatted (seeds only, not joining brokers); in a group with data an empty directory is left for a replaced disk', () => {
  const dir = freshDir();
  try {
    const config = cluster(dir);
    // g2 ran before: b4 and b5 have data, b6's disk was replaced.
    for (const id of ['b4', 'b5']) fs.mkdirSync(join(dir, 'data', id, 'log'), { recursive: true });
    const outcomes = formatNewGroups(config);
    assert.deepEqual(outcomes[0], { group: 'g1', formatted: ['b1', 'b2', 'b3'], skipped: null });
    assert.equal(outcomes[1]?.group, 'g2');
    assert.deepEqual(outcomes[1]?.formatted, []);
    assert.match(outcomes[1]?.skipped ?? '', /b6 start unformatted and join as recovering/);
    assert.equal(readDirectoryFormat(join(dir, 'data', 'b6')), null);
    assert.equal(readDirectoryFormat(join(dir, 'data', 'b7')), null, 'a joining broker is formatted by its operator');
    assert.equal(describeBrokerDirectory(config, 'b1').format?.group, 'g1');
    // Again: nothing more to do, and nothing formatted twice.
    assert.deepEqual(formatNewGroups(config)[0], { group: 'g1', formatted: [], skipped: null });
    assert.equal(formatBrokerDirectory(config, 'b7').brokerId, 'b7');
    assert.throws(() => formatBrokerDirectory(config, 'b4'), /holds data/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
