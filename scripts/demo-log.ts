// make run (until the broker exists): a short, readable tour of the segment log.
// Appends a few batches under ./data/demo-log, closes, reopens, reads them back.
import * as fs from 'node:fs';
import { SegmentLog, decodeRecords, encodeBatch, stampBatch, crc32cHardware } from '../src/log/index.js';

const dir = 'data/demo-log';

function say(message: string): void {
  console.log(message);
}

async function main(): Promise<void> {
  fs.rmSync(dir, { recursive: true, force: true });
  say(`Mamba MQ segment log demo — directory ${dir} (CRC32C ${crc32cHardware ? 'on the CPU (SSE4.2)' : 'in software'})`);
  const events: string[] = [];
  const logger = (event: Record<string, unknown>): void => void events.push(JSON.stringify(event));
  let log = await SegmentLog.open({ dir, segmentBytes: 64 * 1024, flush: { mode: 'sync' }, logger });

  const greetings = ['hello', 'bonjour', 'hola', 'ciao', 'hallo', 'olá'];
  for (let batchIndex = 0; batchIndex < 3; batchIndex++) {
    const records = greetings.slice(batchIndex * 2, batchIndex * 2 + 2).map((word, index) => ({
      key: Buffer.from(`greeting-${batchIndex * 2 + index}`),
      value: Buffer.from(`${word}, world`),
      headers: [{ name: 'lang-index', value: Buffer.from(String(batchIndex * 2 + index)) }],
      timestampMs: Date.now(),
    }));
    const batch = encodeBatch({ records });
    stampBatch(batch, log.endOffset, 1); // what a leader does: assign offsets and its epoch
    const { baseOffset, nextOffset } = log.append(batch);
    say(`append: batch of ${records.length} records, ${batch.byteLength} bytes -> offsets [${baseOffset}, ${nextOffset})`);
  }
  await log.waitDurable(log.endOffset);
  say(`durable: everything below offset ${log.durableOffset} is synced to disk (sync mode, group commit)`);
  await log.close();
  say('close: done; files on disk:');
  for (const name of fs.readdirSync(dir).sort()) say(`  ${name}  (${fs.statSync(`${dir}/${name}`).size} bytes preallocated)`);

  log = await SegmentLog.open({ dir, segmentBytes: 64 * 1024, flush: { mode: 'sync' }, logger });
  say(`reopen: startOffset ${log.startOffset}, endOffset ${log.endOffset}, epochs ${JSON.stringify(log.epochStartOffsets())}`);
  for (const batch of log.read(0, 1 << 20)) {
    for (const record of decodeRecords(batch)) say(`  read: ${record.key?.toString()} = "${record.value?.toString()}"`);
  }
  await log.close();
  say('log events:');
  for (const event of events) say(`  ${event}`);
}

await main();
