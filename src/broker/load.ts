// The leader's own load, for the read advice: client requests in flight and the process's CPU
// share over the last sample window (sampled on a timer, so a Consume reply costs no syscall).
import type { LeaderLoad } from './advice.js';

const sampleIntervalMs = 1000;

export class LoadMonitor {
  inflightRequests = 0;
  private cpuShare = 0;
  private lastCpu = process.cpuUsage();
  private lastSampleNs = process.hrtime.bigint();
  private readonly timer: NodeJS.Timeout;

  constructor() {
    this.timer = setInterval(() => this.sampleCpu(), sampleIntervalMs);
    this.timer.unref();
  }

  private sampleCpu(): void {
    const cpu = process.cpuUsage();
    const nowNs = process.hrtime.bigint();
    const usedUs = cpu.user - this.lastCpu.user + (cpu.system - this.lastCpu.system);
    const elapsedUs = Number(nowNs - this.lastSampleNs) / 1000;
    this.cpuShare = elapsedUs > 0 ? usedUs / elapsedUs : 0;
    this.lastCpu = cpu;
    this.lastSampleNs = nowNs;
  }

  async track<T>(work: () => Promise<T>): Promise<T> {
    this.inflightRequests++;
    try {
      return await work();
    } finally {
      this.inflightRequests--;
    }
  }

  sample(): LeaderLoad {
    return { inflightRequests: this.inflightRequests, cpuShare: this.cpuShare };
  }

  close(): void {
    clearInterval(this.timer);
  }
}
