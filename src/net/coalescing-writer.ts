/**
 * The write side of a relay that reads into a shared buffer (shared-read.ts): each chunk is copied
 * into a slab, and what one turn of the event loop read leaves in one write at its end — one syscall
 * and one wake-up of the reader on the other side instead of one per chunk (a TLS socket delivers
 * 16 KB records, several per socket read). A short chunk ends a burst and is written at once.
 *
 * A slab goes back to a small pool the process shares once its write has completed, so an idle
 * connection holds none, and a busy one reuses the same few instead of allocating per write.
 */
import type { Writable } from 'node:stream';

/** Far above one TLS record, and what one write of a busy relay carries. */
const SLAB_SIZE = 256 * 1024;
/** TLS delivers at most 16 KB per record: anything shorter ends a burst. */
const EAGER_BELOW = 16 * 1024;
/** Slabs kept for reuse, process-wide (2 MB): enough for the relays busy in any one turn. */
const POOL_MAX = 8;
const pool: Buffer[] = [];

function takeSlab(): Buffer {
  return pool.pop() ?? Buffer.allocUnsafe(SLAB_SIZE);
}

export class CoalescingWriter {
  private slab: Buffer | null = null;
  private used = 0;
  private scheduled = false;
  private readonly flushNow = () => this.flush();

  constructor(private readonly to: Writable) {}

  /**
   * Copies `chunk` (the caller may reuse its memory at once). Returns false while `to` still holds
   * written data beyond its high-water mark: the reader should pause until `to` emits 'drain'.
   */
  push(chunk: Buffer): boolean {
    for (let from = 0; from < chunk.length; ) {
      this.slab ??= takeSlab();
      const n = chunk.copy(this.slab, this.used, from);
      this.used += n;
      from += n;
      if (this.used === this.slab.length) this.flush();
    }
    // A chunk short of a full TLS record (or of a socket read that filled most of it) is the end of
    // what the sender wrote: nothing more is coming this turn, so it leaves now rather than after
    // every other callback of the turn (a request or an answer waits for nobody).
    if (chunk.length < EAGER_BELOW) this.flush();
    else if (!this.scheduled && this.used > 0) {
      this.scheduled = true;
      setImmediate(this.flushNow);
    }
    // Not writableNeedDrain alone: after a large write that went out at once it stays set until the
    // next tick, and pausing for that would stop and restart the reader at every batch.
    return !(this.to.writableNeedDrain && this.to.writableLength > 0);
  }

  /** Writes what is pending now (at the end of a turn, and before the caller ends `to`). */
  flush(): void {
    this.scheduled = false;
    const slab = this.slab;
    if (slab === null || this.used === 0) return;
    const bytes = slab.subarray(0, this.used);
    this.slab = null;
    this.used = 0;
    if (this.to.destroyed || this.to.writableEnded) {
      release(slab);
      return;
    }
    this.to.write(bytes, () => release(slab));
  }
}

function release(slab: Buffer): void {
  if (pool.length < POOL_MAX) pool.push(slab);
}
