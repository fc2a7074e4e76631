/**
 * Subject tagging for message policies (policy.ts `subjectTag`): the message as forwarded, with a
 * tag such as `[PHISHING?]` put in front of the value of its first Subject field (a Subject field
 * is added when there is none). Only the header block is rebuilt; the body is read from the spool
 * as it is, so the cost does not grow with the message.
 */
import { DEFAULT_CHUNK, type ObjectSource } from '../../engine/source.js';

/** Header blocks longer than this are left as they are (the tag is cosmetic; the header fields are not). */
const MAX_HEADER = 256 * 1024;

/** A source that is `head` followed by `base` from `from` on. */
class PrefixedSource implements ObjectSource {
  readonly size: number;
  constructor(
    private readonly head: Buffer,
    private readonly base: ObjectSource,
    private readonly from: number,
  ) {
    this.size = head.length + base.size - from;
  }
  async read(position: number, length: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const c of this.stream(position, Math.min(this.size, position + length))) parts.push(c);
    return Buffer.concat(parts);
  }
  async *stream(start = 0, end = this.size, chunkSize = DEFAULT_CHUNK): AsyncIterable<Buffer> {
    end = Math.min(end, this.size);
    if (start < this.head.length) {
      const stop = Math.min(end, this.head.length);
      for (let p = start; p < stop; p += chunkSize)
        yield this.head.subarray(p, Math.min(stop, p + chunkSize));
    }
    if (end > this.head.length)
      yield* this.base.stream(
        this.from + Math.max(0, start - this.head.length),
        this.from + (end - this.head.length),
        chunkSize,
      );
  }
}

/** `source` with `tag` prefixed to its Subject; `source` itself when it already carries the tag. */
export async function tagSubject(source: ObjectSource, tag: string): Promise<ObjectSource> {
  const head = await source.read(0, Math.min(source.size, MAX_HEADER));
  // The header ends at the first empty line (CRLF CRLF; the relay's spool holds CRLF lines).
  const end = head.indexOf('\r\n\r\n');
  if (end < 0 && source.size > head.length) return source;
  const headerEnd = end < 0 ? head.length : end + 2;
  const header = head.subarray(0, headerEnd).toString('latin1'); // bytes kept as they are
  const m = /(^|\r\n)(subject)[ \t]*:[ \t]*/i.exec(header);
  let rebuilt: string;
  if (m) {
    const at = m.index + m[0].length;
    if (header.startsWith(tag, at)) return source;
    rebuilt = `${header.slice(0, at)}${tag} ${header.slice(at)}`;
  } else rebuilt = `Subject: ${tag}\r\n${header}`;
  return new PrefixedSource(Buffer.from(rebuilt, 'latin1'), source, headerEnd);
}
