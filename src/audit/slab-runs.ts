// What the append path's arenas (digest-arena.ts, frame-arena.ts) share: bytes laid out back to
// back in large slabs and handed to the log's batch as a few runs. A slab is replaced when full,
// never rewritten, so every view handed out stays valid for as long as it is held.

export abstract class SlabRuns {
  private slab: Buffer = Buffer.alloc(0);
  private pos = 0;
  /** Start of what was written to the current slab since the last drain. */
  private runStart = 0;
  private runs: Buffer[] = [];

  constructor(private readonly slabBytes: number) {}

  /**
   * Room for `n` more bytes: returns the slab and the offset to write them at (a fresh slab when
   * the current one lacks room), and counts them as written.
   */
  protected take(n: number): { slab: Buffer; off: number } {
    if (this.slab.length - this.pos < n) {
      this.closeRun();
      // allocUnsafeSlow: a slab of its own, not a slice of Node's shared pool; callers write every
      // byte they take before anyone sees it.
      this.slab = Buffer.allocUnsafeSlow(this.slabBytes);
      this.pos = 0;
      this.runStart = 0;
    }
    const off = this.pos;
    this.pos = off + n;
    return { slab: this.slab, off };
  }

  /** Adds a buffer of its own as a run, after what the current slab holds so far. */
  protected pushOwn(buf: Buffer): void {
    this.closeRun();
    this.runs.push(buf);
  }

  /** What was written since the last drain, in order, as a few runs. */
  drain(): Buffer[] {
    this.closeRun();
    const runs = this.runs;
    this.runs = [];
    return runs;
  }

  private closeRun(): void {
    if (this.pos > this.runStart) this.runs.push(this.slab.subarray(this.runStart, this.pos));
    this.runStart = this.pos;
  }
}
