// Structured logs: one JSON object a line on stdout, each with the broker, its group and the
// current epoch (DESIGN §10). Secrets are never passed to it.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export class Logger {
  private epoch = 0;

  constructor(
    private readonly broker: string,
    private readonly group: string,
    private readonly write: (line: string) => void = (line) => process.stdout.write(line),
    private readonly debugEnabled = false,
  ) {}

  setEpoch(epoch: number): void {
    this.epoch = epoch;
  }

  debug(event: string, fields: Record<string, unknown> = {}): void {
    if (this.debugEnabled) this.log('debug', event, fields);
  }

  info(event: string, fields: Record<string, unknown> = {}): void {
    this.log('info', event, fields);
  }

  warn(event: string, fields: Record<string, unknown> = {}): void {
    this.log('warn', event, fields);
  }

  error(event: string, fields: Record<string, unknown> = {}): void {
    this.log('error', event, fields);
  }

  private log(level: LogLevel, event: string, fields: Record<string, unknown>): void {
    const record = { ts: new Date().toISOString(), level, event, broker: this.broker, group: this.group, epoch: this.epoch, ...fields };
    // The log layer names its own event in `fields.event`; the first one written wins.
    record.event = event;
    this.write(`${JSON.stringify(record)}\n`);
  }
}
