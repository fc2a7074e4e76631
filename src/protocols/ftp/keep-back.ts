/**
 * The scan of a file that streams through (larger than holdLimit): the scanner reads the bytes while
 * they cross, everything but the last `keepBack` bytes may go on to the receiver at once, and that
 * tail waits for the verdict (HAVP's keep-back buffer, as the HTTP gateway does for bodies). The
 * receiver therefore never has the whole file before the verdict: an infected one is cut short.
 */
import { PassThrough } from 'node:stream';
import type { Scanner, Verdict } from '../../engine/types.js';

/** Bytes the scanner may lag behind before the relay waits for it. */
const SCAN_LAG = 1024 * 1024;

export class KeepBackScan {
  readonly verdict: Promise<Verdict>;
  private readonly input = new PassThrough({ highWaterMark: SCAN_LAG });
  private readonly abort = new AbortController();
  /** The scanner has answered (it may do so before reading everything, e.g. a hit, or a no-op scanner). */
  private answered = false;
  /** Held bytes, oldest first: at most keepBack, plus part of one chunk being split. */
  private held: Buffer[] = [];
  private heldBytes = 0;

  constructor(
    scanner: Scanner,
    private readonly keepBack: number,
    name: string,
  ) {
    this.verdict = scanner
      .scan(this.input, { name, signal: this.abort.signal })
      .catch(
        (e: Error): Verdict => ({
          status: 'error',
          reason: e.message,
          code: (e as { code?: string }).code,
        }),
      )
      .finally(() => {
        this.answered = true;
        this.input.destroy();
      });
    this.input.on('error', () => {});
  }

  /**
   * Gives the scanner a batch and returns the bytes that are now further than keepBack from the end
   * seen so far (those may be released), and, when the scanner lags more than SCAN_LAG behind, a
   * promise of its catching up: the caller sends the released bytes meanwhile, so the receiver and
   * the scanner work at the same time, and waits for both before it takes the next batch.
   */
  push(chunks: Buffer[]): { release: Buffer[]; caughtUp: Promise<void> | null } {
    let caughtUp: Promise<void> | null = null;
    if (!this.answered) {
      for (const c of chunks) this.input.write(c);
      if (this.input.writableNeedDrain) caughtUp = this.scannerCaughtUp();
    }
    for (const c of chunks) {
      this.held.push(c);
      this.heldBytes += c.length;
    }
    return { release: this.beyondKeepBack(), caughtUp };
  }

  private beyondKeepBack(): Buffer[] {
    const out: Buffer[] = [];
    let excess = this.heldBytes - this.keepBack;
    while (excess > 0) {
      const first = this.held[0]!;
      if (first.length <= excess) {
        out.push(first);
        this.held.shift();
        excess -= first.length;
        this.heldBytes -= first.length;
      } else {
        // The boundary falls inside this chunk: its front goes, its end stays held.
        out.push(first.subarray(0, excess));
        this.held[0] = first.subarray(excess);
        this.heldBytes -= excess;
        excess = 0;
      }
    }
    return out;
  }

  private scannerCaughtUp(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.input.off('drain', done);
        this.input.off('close', done);
        resolve();
      };
      this.input.once('drain', done);
      this.input.once('close', done);
      // The scanner may answer without reading on (and the input then closes, above, on its own).
      this.verdict.then(done, done);
    });
  }

  /** The input is complete: the verdict on all of it. */
  finish(): Promise<Verdict> {
    if (!this.answered) this.input.end();
    return this.verdict;
  }

  /** The held tail, for a delivery after a clean verdict. */
  takeTail(): Buffer[] {
    const tail = this.held;
    this.held = [];
    this.heldBytes = 0;
    return tail;
  }

  /** Stops the scan (the transfer failed); the held tail is dropped. */
  async cancel(): Promise<void> {
    this.held = [];
    this.heldBytes = 0;
    this.abort.abort();
    this.input.destroy();
    await this.verdict;
  }
}
