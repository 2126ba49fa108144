// Errors of the segment log. Operating errors (bad input, damaged files, a closed log) are
// LogError values with a code; bugs are InvariantError from assert() and are never caught.
import { MambaError, type ErrorKind } from '../errors.js';

export type LogErrorCode =
  | 'bad_config' // an option is missing, negative or absurd; `key` names it
  | 'bad_batch' // batch bytes fail their own checks (length, magic, CRC, record count)
  | 'offset_mismatch' // an appended batch does not start at endOffset
  | 'epoch_regression' // an appended batch has an epoch below the last one
  | 'batch_too_large' // a batch cannot fit in one segment
  | 'corrupt' // stored bytes fail their checksum; `file` names the segment
  | 'foreign_file' // the log directory holds a file the log did not write
  | 'bad_segment_header' // a segment file's header is damaged or disagrees with its name
  | 'write_failed' // the file took fewer bytes than given (disk full); nothing was admitted
  | 'flush_failed' // fdatasync failed: the log refuses further writes
  | 'truncated' // the offset a caller waited for was truncated away (or discarded by resetTo)
  | 'reset_failed' // resetTo failed half-way: the log refuses use; a reopen finds the old log or the new one
  | 'closed';

const kindByCode: Record<LogErrorCode, { kind: ErrorKind; retriable: boolean }> = {
  bad_config: { kind: 'invalid_argument', retriable: false },
  bad_batch: { kind: 'invalid_argument', retriable: false },
  offset_mismatch: { kind: 'invalid_argument', retriable: false },
  epoch_regression: { kind: 'invalid_argument', retriable: false },
  batch_too_large: { kind: 'invalid_argument', retriable: false },
  corrupt: { kind: 'internal', retriable: false },
  foreign_file: { kind: 'internal', retriable: false },
  bad_segment_header: { kind: 'internal', retriable: false },
  write_failed: { kind: 'unavailable', retriable: true },
  flush_failed: { kind: 'internal', retriable: false },
  truncated: { kind: 'unavailable', retriable: true },
  reset_failed: { kind: 'internal', retriable: false },
  closed: { kind: 'unavailable', retriable: true },
};

export class LogError extends MambaError {
  override readonly name = 'LogError';
  constructor(
    readonly code: LogErrorCode,
    message: string,
    readonly details: { file?: string; key?: string; offset?: number } = {},
  ) {
    super(kindByCode[code].kind, message, kindByCode[code].retriable);
  }
}
