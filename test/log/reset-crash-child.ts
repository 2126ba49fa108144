// Child process for reset.test: opens the log in <dir>, calls resetTo(<startOffset>, <epoch>) and
// kills itself with SIGKILL just before file step number <killAt> of the reset (counted from 0
// over every step resetTo announces); with killAt -1 the reset completes and the child prints
// "steps <count>" and exits. The page cache survives SIGKILL: what the parent reopens is what a
// process crash leaves (a power loss is covered by the order of the fsyncs, see resetTo).
// Usage: node reset-crash-child.js <dir> <startOffset> <epoch> <killAt>
import { SegmentLog, setResetStepObserverForTests } from '../../src/log/index.js';

const [dir, startOffsetText, epochText, killAtText] = process.argv.slice(2);
if (dir === undefined || startOffsetText === undefined || epochText === undefined || killAtText === undefined) {
  throw new Error('usage: reset-crash-child.js <dir> <startOffset> <epoch> <killAt>');
}
const killAt = Number(killAtText);
const log = await SegmentLog.open({ dir, segmentBytes: 8192, indexIntervalBytes: 512, flush: { mode: 'sync' }, logger: () => {} });
let stepCount = 0;
setResetStepObserverForTests(() => {
  if (stepCount === killAt) process.kill(process.pid, 'SIGKILL');
  stepCount++;
});
log.resetTo(Number(startOffsetText), Number(epochText));
process.stdout.write(`steps ${stepCount}\n`);
await log.close();
