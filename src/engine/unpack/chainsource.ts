/**
 * An ObjectSource over a chain of fixed-size units inside another source: an OLE2 stream is a list
 * of sectors (or 64-byte mini sectors inside the mini stream) scattered through the file. Reads map
 * logical offsets to units and coalesce runs of consecutive units, so a stream is read in place,
 * chunk by chunk, never copied whole into memory.
 */
import { DEFAULT_CHUNK, type ObjectSource } from '../source.js';

export class ChainSource implements ObjectSource {
  readonly size: number;

  /**
   * @param base     the source the units live in
   * @param units    unit numbers in stream order
   * @param unitSize bytes per unit
   * @param offsetOf where unit n starts in `base`
   * @param size     declared stream size; clipped to what the chain can hold
   */
  constructor(
    private readonly base: ObjectSource,
    private readonly units: readonly number[],
    private readonly unitSize: number,
    private readonly offsetOf: (unit: number) => number,
    size: number,
  ) {
    this.size = Math.max(0, Math.min(size, units.length * unitSize));
  }

  async read(position: number, length: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const c of this.stream(position, Math.min(this.size, position + length))) parts.push(c);
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  async *stream(start = 0, end = this.size, chunkSize = DEFAULT_CHUNK): AsyncIterable<Buffer> {
    end = Math.min(end, this.size);
    let pos = Math.max(0, start);
    while (pos < end) {
      // Extend the run while the next unit directly follows this one in `base`.
      const first = Math.floor(pos / this.unitSize);
      let last = first;
      const want = Math.min(end - pos, chunkSize);
      while (
        (last + 1) * this.unitSize < pos + want &&
        this.offsetOf(this.units[last + 1]!) === this.offsetOf(this.units[last]!) + this.unitSize
      )
        last++;
      const inUnit = pos - first * this.unitSize;
      const runBytes = (last - first + 1) * this.unitSize - inUnit;
      const len = Math.min(want, runBytes);
      const b = await this.base.read(this.offsetOf(this.units[first]!) + inUnit, len);
      if (b.length === 0) return; // the file ends early: the stream is cut short
      yield b;
      pos += b.length;
      if (b.length < len) return;
    }
  }
}
