/**
 * The bytes of a streamed object that may not leave yet: everything but the last `keepBack` bytes
 * seen so far may go on to the receiver, the tail waits for the verdict (HAVP's keep-back buffer).
 * Shared by the HTTP body scanner and the FTP transfer gate, which release on the same rule.
 */
export class KeepBackTail {
  /** Held bytes, oldest first: at most keepBack once `beyondKeepBack()` has run. */
  private chunks: Buffer[] = [];
  private bytes = 0;

  constructor(private readonly keepBack: number) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.bytes += chunk.length;
  }

  /** Removes and returns, oldest first, the bytes further than keepBack from the end seen so far. */
  beyondKeepBack(): Buffer[] {
    const out: Buffer[] = [];
    let excess = this.bytes - this.keepBack;
    while (excess > 0) {
      const first = this.chunks[0]!;
      if (first.length <= excess) {
        out.push(first);
        this.chunks.shift();
        excess -= first.length;
        this.bytes -= first.length;
      } else {
        // The boundary falls inside this chunk: its front goes, its end stays held.
        out.push(first.subarray(0, excess));
        this.chunks[0] = first.subarray(excess);
        this.bytes -= excess;
        excess = 0;
      }
    }
    return out;
  }

  /** Removes and returns everything held (a delivery after a clean verdict, or a drop). */
  takeAll(): Buffer[] {
    const all = this.chunks;
    this.chunks = [];
    this.bytes = 0;
    return all;
  }
}
