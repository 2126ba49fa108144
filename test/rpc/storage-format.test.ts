// A broker on an empty, unformatted directory tells a new group from a replaced disk by asking
// its group's other seed brokers what their directories hold (GET /directory; issue 13.3 for
// Kubernetes and Docker, where no format step runs). The decision table, with the answers faked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseClusterConfig } from '../../src/config/cluster.js';
import { readDirectoryFormat } from '../../src/replica/format.js';
import { directoryState, formatIfGroupIsNew, type DirectoryReport } from '../../src/rpc/storage-format.js';

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
    '      - { id: b4, host: 127.0.0.1, clientPort: 7104, peerPort: 7204, metricsPort: 7304, joining: true }',
  ].join('\n');
  return parseClusterConfig(text, 'c1.yaml', dir);
}

const quiet = { info: () => undefined, warn: () => undefined };

/** Answers by metrics port: a report, or a thrown error (the broker is down). */
function peers(answers: Record<number, DirectoryReport['state'] | 'down' | 'other-cluster'>, rounds = { count: 0 }) {
  return async (url: string): Promise<unknown> => {
    rounds.count += 1;
    const port = Number(url.split(':')[2]!.split('/')[0]);
    const id = `b${port - 7300}`;
    const answer = answers[port];
    if (answer === undefined || answer === 'down') throw new Error('ECONNREFUSED');
    if (answer === 'other-cluster') return { cluster: 'c2', group: 'g1', broker: id, state: 'unused' };
    return { cluster: 'c1', group: 'g1', broker: id, state: answer };
  };
}

function withDir(work: (dir: string) => Promise<void>): Promise<void> {
  const dir = fs.mkdtempSync(join(tmpdir(), 'mamba-format-new-'));
  return work(dir).finally(() => fs.rmSync(dir, { recursive: true, force: true }));
}

test('every other seed broker empty (formatted or not): a new group, the directory is formatted', () =>
  withDir(async (dir) => {
    const config = cluster(dir);
    assert.equal(await formatIfGroupIsNew(config, 'b1', quiet, () => false, peers({ 7302: 'unused', 7303: 'formatted-unused' })), 'formatted');
    assert.equal(readDirectoryFormat(join(dir, 'data', 'b1'))?.brokerId, 'b1');
    assert.equal(directoryState(join(dir, 'data', 'b1')), 'formatted-unused');
  }));

test('one seed broker holding data: a replaced disk, nothing written', () =>
  withDir(async (dir) => {
    const config = cluster(dir);
    assert.equal(await formatIfGroupIsNew(config, 'b1', quiet, () => false, peers({ 7302: 'down', 7303: 'data' })), 'replaced-disk');
    assert.equal(directoryState(join(dir, 'data', 'b1')), 'unused');
  }));

test('a silent broker, or one of another cluster, is waited for; the wait ends when asked to', () =>
  withDir(async (dir) => {
    const config = cluster(dir);
    const rounds = { count: 0 };
    let polls = 0;
    const result = await formatIfGroupIsNew(config, 'b1', quiet, () => ++polls > 3, peers({ 7302: 'unused', 7303: 'other-cluster' }, rounds));
    assert.equal(result, 'stopped');
    assert.ok(rounds.count >= 4, 'asked again while waiting');
    assert.equal(directoryState(join(dir, 'data', 'b1')), 'unused', 'nothing formatted without every answer');
  }));

test('a directory that holds data, a formatted one, or a joining broker: nothing asked', () =>
  withDir(async (dir) => {
    const config = cluster(dir);
    fs.mkdirSync(join(dir, 'data', 'b2', 'log'), { recursive: true });
    const rounds = { count: 0 };
    assert.equal(await formatIfGroupIsNew(config, 'b2', quiet, () => false, peers({}, rounds)), 'not-empty');
    assert.equal(await formatIfGroupIsNew(config, 'b4', quiet, () => false, peers({}, rounds)), 'not-empty');
    assert.equal(rounds.count, 0);
  }));
