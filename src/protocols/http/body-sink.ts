/**
 * Where a judged body goes: a socket, behind its message head, framed as the receiving side needs
 * (as is, or chunked). Released bytes leave in batches, so a held response is one write (head, body
 * and last chunk together: one system call, full TLS records) and a streamed one costs one write per
 * batch rather than one per piece.
 */
import type { Duplex } from 'node:stream';
import type { BodySink } from './body-scanner.js';
import type { RawHeaders } from './headers.js';
import { send } from './io.js';
import { encodeLastChunk } from './serialize.js';

const CRLF = Buffer.from('\r\n', 'latin1');

/**
 * `head`: the serialized message head. `chunked`: frame the body as chunks (each batch one chunk,
 * RFC 9112 §7.1); `trailers()` is asked for once the body is complete.
 */
export function framedSink(
  socket: Duplex,
  head: Buffer,
  chunked: boolean,
  trailers: () => RawHeaders = () => [],
): BodySink {
  const frame = (chunks: Buffer[], out: Buffer[]) => {
    let n = 0;
    for (const c of chunks) n += c.length;
    if (n === 0) return;
    if (chunked) out.push(Buffer.from(`${n.toString(16)}\r\n`, 'latin1'));
    for (const c of chunks) if (c.length) out.push(c);
    if (chunked) out.push(CRLF);
  };
  return {
    begin: () => send(socket, head),
    write: (c) => {
      const out: Buffer[] = [];
      frame([c], out);
      return out.length ? send(socket, out) : Promise.resolve();
    },
    writeBatch: (chunks, first, last) => {
      const out: Buffer[] = first ? [head] : [];
      frame(chunks, out);
      if (last && chunked) out.push(encodeLastChunk(trailers()));
      return out.length ? send(socket, out) : Promise.resolve();
    },
  };
}
