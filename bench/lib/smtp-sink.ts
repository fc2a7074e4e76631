/**
 * The benchmark's mail server: nodemailer's smtp-server on 127.0.0.1 (plaintext, PIPELINING), which
 * accepts every message and counts it. Prints {"port":N} when listening; answers SIGTERM by exiting.
 *
 * `durable DIR`: like a real MTA's queue (RFC 5321 §6.1: a 250 means the message is safe), each
 * message is written to a file in DIR and fsync'd before the 250. Without it, messages are only counted
 * in memory — a server far faster than any real one, which makes every relay look slow.
 */
import { createWriteStream } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { SMTPServer } from 'smtp-server';

const durableDir = process.argv[2] === 'durable' ? process.argv[3] : undefined;
let seq = 0;

let messages = 0;
let bytes = 0;
const server = new SMTPServer({
  disabledCommands: ['STARTTLS', 'AUTH'],
  authOptional: true,
  logger: false,
  size: 100 * 1024 * 1024,
  maxClients: 1000,
  onData(stream, _session, cb) {
    if (durableDir) {
      const path = join(durableDir, `q${process.pid}-${seq++}`);
      const file = createWriteStream(path);
      stream.on('data', (c: Buffer) => {
        bytes += c.length;
      });
      stream.pipe(file);
      file.on('finish', async () => {
        const fh = await open(path, 'r+');
        await fh.sync();
        await fh.close();
        messages++;
        cb(null, 'queued');
        // A queue hands the file on; here it is dropped so the disk does not fill.
        void rm(path, { force: true });
      });
      return;
    }
    stream.on('data', (c: Buffer) => {
      bytes += c.length;
    });
    stream.on('end', () => {
      messages++;
      cb(null, 'queued');
    });
  },
});
server.on('error', () => {});
server.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ port: (server.server.address() as AddressInfo).port }));
});
process.on('SIGTERM', () => {
  console.error(JSON.stringify({ messages, bytes }));
  process.exit(0);
});
