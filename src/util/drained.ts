import type { Writable } from 'node:stream';

/**
 * Resolves on 'drain', or when the stream closes or fails, or when `settled` does: a scanner fed
 * through `stream` may finish (and stop reading) without the stream ever draining or closing.
 */
export function drained(stream: Writable, settled: Promise<unknown>): Promise<void> {
  return new Promise((resolve) => {
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      stream.off('drain', finish);
      stream.off('close', finish);
      stream.off('error', finish);
      resolve();
    };
    settled.then(finish, finish);
    stream.once('drain', finish);
    stream.once('close', finish);
    stream.once('error', finish);
  });
}
