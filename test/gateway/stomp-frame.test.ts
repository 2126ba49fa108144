// STOMP 1.2 frame decoding (frame.ts) and destinations (destination.ts): the spec's rules one by
// one, every bound, and a seeded fuzz run (random and mutated frames: the decoder returns frames
// or throws FrameError, nothing else, and never holds more than its bound).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeOne, encodeFrame, escapeHeader, FrameDecoder, FrameError, unescapeHeader, type FrameLimits } from '../../src/gateway/stomp/frame.js';
import { parseDestination } from '../../src/gateway/stomp/destination.js';
import { parseHeartBeat } from '../../src/gateway/stomp/session.js';
import { prng } from '../harness/seeded-random.js';

const limits: FrameLimits = { frameBytesMax: 4096, headerCountMax: 8, headerLineBytesMax: 256 };
const seed = Number(process.env.MAMBA_FUZZ_SEED ?? Date.now() % 100_000);

function decodeAll(text: string | Buffer, l = limits): ReturnType<FrameDecoder['push']> {
  return new FrameDecoder(l).push(Buffer.isBuffer(text) ? text : Buffer.from(text));
}

test('a frame: command, headers, empty line, body, NUL; LF or CR LF line ends', () => {
  for (const eol of ['\n', '\r\n']) {
    const [frame] = decodeAll(`SEND${eol}destination:/queue/a${eol}x:1${eol}${eol}hello\0`);
    assert.equal(frame!.command, 'SEND');
    assert.equal(frame!.headers.get('destination'), '/queue/a');
    assert.equal(frame!.headers.get('x'), '1');
    assert.equal(frame!.body.toString(), 'hello');
  }
});

test('heart-beats (bare EOLs) between frames are counted and skipped', () => {
  const decoder = new FrameDecoder(limits);
  assert.deepEqual(decoder.push(Buffer.from('\n\r\n\n')), []);
  assert.equal(decoder.takeHeartbeats(), 3);
  const frames = decoder.push(Buffer.from('DISCONNECT\n\n\0\nDISCONNECT\n\n\0'));
  assert.equal(frames.length, 2);
});

test('a frame split at every byte decodes the same', () => {
  const text = Buffer.from('SEND\ndestination:/queue/a\ncontent-length:3\n\na\0b\0');
  for (let cut = 1; cut < text.length; cut++) {
    const decoder = new FrameDecoder(limits);
    const frames = [...decoder.push(text.subarray(0, cut)), ...decoder.push(text.subarray(cut))];
    assert.equal(frames.length, 1, `cut at ${cut}`);
    assert.deepEqual([...frames[0]!.body], [0x61, 0, 0x62]);
  }
});

test('content-length: the body may hold NULs; the byte after it must be NUL', () => {
  assert.equal(decodeAll('SEND\ncontent-length:3\n\n\0\0\0\0')[0]!.body.length, 3);
  assert.throws(() => decodeAll('SEND\ncontent-length:2\n\nabc\0'), /not followed by NUL/);
  assert.throws(() => decodeAll('SEND\ncontent-length:-1\n\n\0'), /not a byte count/);
});

test('a repeated header: the first one counts (STOMP 1.2)', () => {
  assert.equal(decodeAll('SEND\na:1\na:2\n\n\0')[0]!.headers.get('a'), '1');
});

test('escapes: \\r \\n \\c \\\\ decode; an undefined escape is an error; CONNECT does not unescape', () => {
  assert.equal(decodeAll('SEND\nk\\cx:a\\nb\\\\c\\r\n\n\0')[0]!.headers.get('k:x'), 'a\nb\\c\r');
  assert.throws(() => decodeAll('SEND\nk:a\\tb\n\n\0'), FrameError);
  assert.equal(decodeAll('CONNECT\npasscode:a\\tb\n\n\0')[0]!.headers.get('passcode'), 'a\\tb');
  for (const text of ['plain', 'a:b', 'x\ny', '\\', 'c\r:\n\\']) assert.equal(unescapeHeader(escapeHeader(text)), text);
});

test('bad input: unknown command, header without colon, too many headers, long lines, oversized frames', () => {
  assert.throws(() => decodeAll('PUBLISH\n\n\0'), /unknown command "PUBLISH"/);
  // A client's text that may hold a secret is never echoed (a mangled CONNECT runs its passcode on).
  assert.throws(
    () => decodeAll('CONNECTxpasscode:s3cret\n\n\0'),
    (e: Error) => /unknown command \(a first line of 23 characters\)/.test(e.message) && !e.message.includes('s3cret'),
  );
  assert.throws(() => decodeAll('SEND\nnocolon\n\n\0'), /header line 1 has no name and colon/);
  assert.throws(
    () => decodeAll('SEND\nh:1\npasscodes3cret\n\n\0'),
    (e: Error) => /header line 2 has no name and colon/.test(e.message) && !e.message.includes('s3cret'),
  );
  assert.throws(() => decodeAll('SEND\n:value\n\n\0'), /has no name and colon/);
  assert.throws(() => decodeAll(`SEND\n${'h:1\n'.repeat(9)}\n\0`), /more than 8 headers/);
  assert.throws(() => decodeAll(`SEND\nh:${'x'.repeat(300)}\n\n\0`), /header line longer/);
  assert.throws(() => decodeAll(`SEND\nh:${'x'.repeat(300)}`), /header line longer/); // unfinished, already too long
  assert.throws(() => decodeAll(`SEND\n\n${'x'.repeat(5000)}`), /frame larger than 4096/);
  assert.throws(() => decodeAll('SEND\ncontent-length:99999\n\n'), /frame larger than 4096/);
});

test('an unfinished frame is held; bytes held never exceed the bound by more than one chunk', () => {
  const decoder = new FrameDecoder(limits);
  assert.deepEqual(decoder.push(Buffer.from('SEND\ndestination:/queue/a\n\nabc')), []);
  assert.equal(decoder.push(Buffer.from('def\0'))[0]!.body.toString(), 'abcdef');
});

test('encodeFrame escapes headers, always sets content-length, and decodes back', () => {
  const bytes = encodeFrame(
    'MESSAGE',
    [
      ['destination', '/queue/a'],
      ['weird:name', 'line\nbreak'],
      ['content-length', '999'],
    ],
    Buffer.from([1, 0, 2]),
  );
  // A server frame read by our decoder (as SEND, the same grammar) gives the same headers and body.
  const asSend = Buffer.concat([Buffer.from('SEND'), bytes.subarray('MESSAGE'.length)]);
  const frame = decodeOne(asSend)!.frame;
  assert.equal(frame.headers.get('weird:name'), 'line\nbreak');
  assert.equal(frame.headers.get('content-length'), '3');
  assert.deepEqual([...frame.body], [1, 0, 2]);
});

test('destinations: /queue/<topic>[/<queue>]; anything else names the problem', () => {
  assert.deepEqual(parseDestination('/queue/orders'), { topic: 'orders', queue: null });
  assert.deepEqual(parseDestination('/queue/orders.eu/3'), { topic: 'orders.eu', queue: 3 });
  for (const bad of [
    undefined,
    '',
    '/topic/a',
    'queue/a',
    '/queue/',
    '/queue/a/b',
    '/queue/a/01',
    '/queue/a/1/2',
    '/queue/-a',
    `/queue/${'a'.repeat(201)}`,
    '/queue/a/99999999',
  ])
    assert.equal(typeof parseDestination(bad), 'string', String(bad));
});

test('heart-beat header: "cx,cy" in ms, absent = 0,0', () => {
  assert.deepEqual(parseHeartBeat(undefined), { offerMs: 0, wantMs: 0 });
  assert.deepEqual(parseHeartBeat('500,1000'), { offerMs: 500, wantMs: 1000 });
  for (const bad of ['', '1', '1,2,3', '-1,0', 'a,b', '1,2x']) assert.equal(parseHeartBeat(bad), null, bad);
});

test(`fuzz: random and mutated frames give frames or FrameError, within bounds (seed ${seed}; MAMBA_FUZZ_SEED replays)`, () => {
  const random = prng(seed);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
  const valid = [
    'CONNECT\naccept-version:1.2\nlogin:a\npasscode:b\nheart-beat:0,0\n\n\0',
    'SEND\ndestination:/queue/t\nreceipt:1\ncontent-length:5\n\nhello\0',
    'SUBSCRIBE\nid:0\ndestination:/queue/t\nack:client-individual\n\n\0',
    'ACK\nid:12\n\n\0',
    '\n\n',
  ];
  const alphabet = [0x00, 0x0a, 0x0d, 0x3a, 0x5c, 0x41, 0x20, 0xff, 0x63, 0x6e];
  const runsMax = 20_000;
  let framesSeen = 0;
  let errorsSeen = 0;
  for (let run = 0; run < runsMax; run++) {
    let bytes = Buffer.from(Array.from({ length: 1 + Math.floor(random() * 4) }, () => pick(valid)).join(''));
    const mutations = Math.floor(random() * 6);
    for (let m = 0; m < mutations; m++) {
      const at = Math.floor(random() * (bytes.length + 1));
      const kind = random();
      if (kind < 0.4 && bytes.length > 0) bytes[Math.min(at, bytes.length - 1)] = pick(alphabet);
      else if (kind < 0.7) bytes = Buffer.concat([bytes.subarray(0, at), Buffer.from([pick(alphabet)]), bytes.subarray(at)]);
      else if (kind < 0.9) bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + 1)]);
      else bytes = Buffer.concat([bytes, Buffer.alloc(Math.floor(random() * 6000), pick(alphabet))]);
    }
    const decoder = new FrameDecoder(limits);
    try {
      // Fed in random chunks, as a socket would.
      for (let at = 0; at < bytes.length; ) {
        const size = 1 + Math.floor(random() * 64);
        for (const frame of decoder.push(bytes.subarray(at, at + size))) {
          framesSeen++;
          assert.ok(frame.headers.size <= limits.headerCountMax);
          assert.ok(frame.body.length <= limits.frameBytesMax);
        }
        at += size;
      }
    } catch (error) {
      if (!(error instanceof FrameError)) throw new Error(`seed ${seed} run ${run}: ${(error as Error).stack}`);
      errorsSeen++;
    }
  }
  assert.ok(framesSeen > 0 && errorsSeen > 0, `both outcomes seen (frames ${framesSeen}, errors ${errorsSeen})`);
});
