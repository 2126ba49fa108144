// The segment log: public surface for the replica and Raft layers.
export {
  SegmentLog,
  durableWaitersMax,
  quarantineDirOf,
  setResetStepObserverForTests,
  type AppendResult,
  type LogStats,
  type QuarantinedFile,
  type ResetStep,
} from './segment-log.js';
export type { EpochEntry, EpochEnd } from './epoch-history.js';
export {
  type FlushPolicy,
  type RetentionPolicy,
  type SegmentLogOptions,
  type LogEvent,
  type LogLogger,
  segmentBytesDefault,
  segmentBytesMin,
  segmentBytesMax,
  indexIntervalBytesDefault,
} from './options.js';
export { LogError, type LogErrorCode } from './errors.js';
export {
  BatchType,
  BatchField,
  batchHeaderBytes,
  batchMagic,
  batchTypeMask,
  batchFlagsMask,
  decodeBatchHeader,
  verifyBatch,
  stampBatch,
  encodeBatch,
  encodeBatchRaw,
  encodeRecords,
  decodeRecords,
  decodeRecordsRegion,
  type BatchHeader,
  type BatchFields,
  type BatchInput,
  type RawBatchInput,
  type LogRecord,
  type RecordHeader,
} from './codec.js';
export { crc32c, crc32cSoftware, crc32cHardware } from './native.js';
export { fsyncDirectory } from './segment-files.js';
export { crc32cJs } from './crc32c-js.js';
export { setSyncObserverForTests, readSyncRecord, syncRecordPath, type SyncRecord } from './sync-record.js';
