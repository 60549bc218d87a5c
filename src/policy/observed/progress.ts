// The progress line of long offline runs (policy learn / replay over a day of a busy gateway):
// records, bytes of the input read, rate and the process's memory, on stderr. On a terminal one
// line rewritten in place, otherwise a line every few seconds (logs of CI jobs). Owns nothing
// else; the clock is the wall clock because it reports real elapsed time, never decides anything.

export interface ProgressSink {
  write(text: string): void;
  isTTY: boolean;
}

const TTY_EVERY_MS = 250;
const LOG_EVERY_MS = 5000;

const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');
const fmtBytes = (n: number): string => (n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(2)} GiB` : `${(n / (1 << 20)).toFixed(1)} MiB`);

export class Progress {
  private records = 0;
  private bytes = 0;
  private readonly started = performance.now();
  private readonly startedCpu = process.cpuUsage();
  private lastShown = 0;
  private shown = false;

  constructor(
    private readonly what: string,
    private readonly totalBytes: number,
    private readonly sink: ProgressSink | undefined,
  ) {}

  /** Counts a batch; prints when the last line is old enough. */
  add(records: number, bytes: number): void {
    this.records += records;
    this.bytes += bytes;
    const now = performance.now();
    if (now - this.lastShown < (this.sink?.isTTY ? TTY_EVERY_MS : LOG_EVERY_MS)) return;
    this.lastShown = now;
    if (this.sink) {
      this.sink.write(`${this.sink.isTTY ? '\r\x1b[K' : ''}${this.line(now)}${this.sink.isTTY ? '' : '\n'}`);
      this.shown = true;
    }
  }

  private line(now: number): string {
    const sec = Math.max((now - this.started) / 1000, 1e-3);
    const pct = this.totalBytes > 0 ? ` (${Math.min(100, Math.floor((this.bytes / this.totalBytes) * 100))}%)` : '';
    return `${this.what}: ${fmtInt(this.records)} records, ${fmtBytes(this.bytes)} of ${fmtBytes(this.totalBytes)}${pct}, ${fmtInt(this.records / sec)} records/s, rss ${fmtBytes(process.memoryUsage.rss())}`;
  }

  /**
   * Ends the line and returns the totals. Peak RSS is the whole process's, from the kernel; CPU
   * seconds are the process's (every thread, GC included) since the pass began, so the rate per
   * CPU second holds on a machine shared with other work, where the wall-clock rate does not.
   */
  finish(): { records: number; bytes: number; seconds: number; recordsPerSec: number; cpuSeconds: number; recordsPerCpuSec: number; peakRssBytes: number } {
    const now = performance.now();
    if (this.sink && (this.shown || !this.sink.isTTY)) this.sink.write(`${this.sink.isTTY ? '\r\x1b[K' : ''}${this.line(now)}\n`);
    const seconds = (now - this.started) / 1000;
    const cpu = process.cpuUsage(this.startedCpu);
    const cpuSeconds = (cpu.user + cpu.system) / 1e6;
    return {
      records: this.records,
      bytes: this.bytes,
      seconds,
      recordsPerSec: seconds > 0 ? this.records / seconds : 0,
      cpuSeconds,
      recordsPerCpuSec: cpuSeconds > 0 ? this.records / cpuSeconds : 0,
      peakRssBytes: process.resourceUsage().maxRSS * 1024,
    };
  }
}
