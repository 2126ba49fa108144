// A backup or a restore that cannot go on: a missing or damaged file (named), a target that holds
// data, a backup that does not fit the cluster. Never retriable as it is: the input must change.
import { MambaError } from '../errors.js';

export class BackupError extends MambaError {
  override readonly name = 'BackupError';
  constructor(message: string) {
    super('failed_precondition', message, false);
  }
}
