/**
 * Runs a node:zlib transform over an async byte source with backpressure (pipe), yielding its output.
 * zlib errors (bad data, unexpected end) become UnpackError with the caller's code.
 */
import { Readable, type Transform } from 'node:stream';
import { asUnpackError } from './limits.js';

export async function* throughZlib(
  format: string,
  code: string,
  input: AsyncIterable<Buffer>,
  z: Transform,
): AsyncGenerator<Buffer> {
  const src = Readable.from(input, { objectMode: false });
  src.on('error', (e) => z.destroy(e));
  src.pipe(z);
  try {
    for await (const chunk of z) yield chunk as Buffer;
  } catch (e) {
    throw asUnpackError(format, code, e);
  } finally {
    src.unpipe(z);
    src.destroy();
    z.destroy();
  }
}
