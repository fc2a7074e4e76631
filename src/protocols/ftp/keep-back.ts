/**
 * The scan of a file that streams through (larger than holdLimit): the scanner reads the bytes while
 * they cross, everything but the last `keepBack` bytes may go on to the receiver at once, and that
 * tail waits for the verdict (HAVP's keep-back buffer, as the HTTP gateway does for bodies). The
 * receiver therefore never has the whole file before the verdict: an infected one is cut short.
 */
import { PassThrough } from 'node:stream';
import { type Scanner, scanFailure, type Verdict } from '../../engine/types.js';
import { drained } from '../../util/drained.js';
import { KeepBackTail } from '../../util/keep-back-tail.js';

/** Bytes the scanner may lag behind before the relay waits for it. */
const SCAN_LAG = 1024 * 1024;

export class KeepBackScan {
  readonly verdict: Promise<Verdict>;
  private readonly input = new PassThrough({ highWaterMark: SCAN_LAG });
  private readonly abort = new AbortController();
  /**
   * The verdict once the scanner has answered: it may do so before reading everything (a hit the
   * engine decides early, or a no-op scanner).
   */
  private settled: Verdict | null = null;
  private readonly held: KeepBackTail;

  constructor(scanner: Scanner, keepBack: number, name: string) {
    this.held = new KeepBackTail(keepBack);
    this.verdict = scanner
      .scan(this.input, { name, signal: this.abort.signal, decideEarly: true })
      .catch(scanFailure)
      .then((v) => {
        this.settled = v;
        return v;
      })
      .finally(() => this.input.destroy());
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
    // Known infected before the end: nothing more goes out; the caller cuts the receiver at the end.
    if (this.settled?.status === 'infected') return { release: [], caughtUp };
    if (!this.settled) {
      for (const c of chunks) this.input.write(c);
      // The scanner may answer without reading on (and the input then closes, above, on its own).
      if (this.input.writableNeedDrain) caughtUp = drained(this.input, this.verdict);
    }
    for (const c of chunks) this.held.push(c);
    return { release: this.held.beyondKeepBack(), caughtUp };
  }

  /** The verdict when the scanner has already answered (an early hit), else null. */
  get decided(): Verdict | null {
    return this.settled;
  }

  /** The input is complete: the verdict on all of it. */
  finish(): Promise<Verdict> {
    if (!this.settled) this.input.end();
    return this.verdict;
  }

  /** The held tail, for a delivery after a clean verdict. */
  takeTail(): Buffer[] {
    return this.held.takeAll();
  }

  /** Stops the scan (the transfer failed); the held tail is dropped. */
  async cancel(): Promise<void> {
    this.held.takeAll();
    this.abort.abort();
    this.input.destroy();
    await this.verdict;
  }
}
