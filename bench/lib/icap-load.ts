/**
 * A lean ICAP load client for the benchmark: keep-alive connections each sending RESPMOD requests in
 * a loop (Preview: 1024, Allow: 204, a chunked body of unique bytes so no verdict cache answers),
 * answering 100 Continue with the rest, and reading the final response (204, or 200 with a chunked
 * body it skips without keeping). Counts completed requests and body bytes sent.
 */
import { connect, type Socket } from 'node:net';

export interface LoadResult {
  requests: number;
  bytes: number;
  seconds: number;
  statuses: Record<string, number>;
}

const PREVIEW = 1024;

function request(service: string, port: number, body: Buffer): { first: Buffer; rest: Buffer } {
  const reqHdr = 'GET http://origin.bench/object HTTP/1.1\r\nHost: origin.bench\r\n\r\n';
  const resHdr = `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\n\r\n`;
  const head =
    `RESPMOD icap://127.0.0.1:${port}/${service} ICAP/1.0\r\nHost: 127.0.0.1:${port}\r\nAllow: 204\r\nPreview: ${PREVIEW}\r\n` +
    `Encapsulated: req-hdr=0, res-hdr=${reqHdr.length}, res-body=${reqHdr.length + resHdr.length}\r\n\r\n${reqHdr}${resHdr}`;
  const pv = body.subarray(0, PREVIEW);
  const all = body.length <= PREVIEW;
  const first = Buffer.concat([
    Buffer.from(`${head}${pv.length.toString(16)}\r\n`, 'latin1'),
    pv,
    Buffer.from(all ? '\r\n0; ieof\r\n\r\n' : '\r\n0\r\n\r\n', 'latin1'),
  ]);
  if (all) return { first, rest: Buffer.alloc(0) };
  const restBody = body.subarray(PREVIEW);
  const rest = Buffer.concat([
    Buffer.from(`${restBody.length.toString(16)}\r\n`),
    restBody,
    Buffer.from('\r\n0\r\n\r\n'),
  ]);
  return { first, rest };
}

/** Reads ICAP responses off one socket; resolves each with its status once it is complete. */
class ResponseReader {
  private buf: Buffer = Buffer.alloc(0);
  private pending: ((status: number) => void) | null = null;
  private failed: ((e: Error) => void) | null = null;
  /** Skipping a chunked body: bytes of the current chunk (plus CRLF) still to drop. */
  private skip = 0;
  private inBody = false;
  private headersLeft = 0;
  private status = 0;

  constructor(socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
      this.pump();
    });
    socket.on('close', () => this.failed?.(new Error('connection closed')));
    socket.on('error', (e) => this.failed?.(e));
  }

  next(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.pending = resolve;
      this.failed = reject;
      this.pump();
    });
  }

  private done(status: number): void {
    const p = this.pending;
    this.pending = null;
    this.failed = null;
    this.inBody = false;
    p?.(status);
  }

  private pump(): void {
    while (this.pending) {
      if (!this.inBody && this.headersLeft === 0) {
        const end = this.buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = this.buf.toString('latin1', 0, end);
        this.buf = this.buf.subarray(end + 4);
        this.status = Number(head.slice(9, 12));
        const enc = /Encapsulated: *([^\r\n]*)/i.exec(head)?.[1] ?? 'null-body=0';
        const parts = enc.split(',').map((p) => p.trim().split('='));
        const last = parts[parts.length - 1]!;
        if (this.status === 100 || last[0] === 'null-body') {
          this.headersLeft = last[0] === 'null-body' && this.status !== 100 ? Number(last[1]) : 0;
          if (this.headersLeft === 0) {
            this.done(this.status);
            continue;
          }
        } else {
          this.headersLeft = Number(last[1]);
          this.inBody = true;
        }
      }
      if (this.headersLeft > 0) {
        const n = Math.min(this.headersLeft, this.buf.length);
        this.buf = this.buf.subarray(n);
        this.headersLeft -= n;
        if (this.headersLeft > 0) return;
        if (!this.inBody) {
          this.done(this.status);
          continue;
        }
      }
      // Chunked body: drop chunks until the last one.
      if (this.skip > 0) {
        const n = Math.min(this.skip, this.buf.length);
        this.buf = this.buf.subarray(n);
        this.skip -= n;
        if (this.skip > 0) return;
      }
      const eol = this.buf.indexOf('\r\n');
      if (eol < 0) return;
      const size = Number.parseInt(this.buf.toString('latin1', 0, eol), 16);
      if (size === 0) {
        if (this.buf.length < eol + 4) return;
        this.buf = this.buf.subarray(eol + 4);
        this.done(this.status);
        continue;
      }
      this.buf = this.buf.subarray(eol + 2);
      this.skip = size + 2;
    }
  }
}

/** Runs `connections` clients against port/service for `seconds`, bodies of `size` bytes. */
export async function icapLoad(o: {
  port: number;
  service: string;
  size: number;
  connections: number;
  seconds: number;
}): Promise<LoadResult> {
  const template = Buffer.alloc(o.size);
  for (let i = 0; i < template.length; i++) template[i] = (i * 2654435761) >>> 24;
  let counter = 0;
  let requests = 0;
  let bytes = 0;
  const statuses: Record<string, number> = {};
  const t0 = performance.now();
  const until = t0 + o.seconds * 1000;
  const worker = async () => {
    const socket = connect(o.port, '127.0.0.1');
    socket.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const reader = new ResponseReader(socket);
    try {
      while (performance.now() < until) {
        // Unique content: a counter stamped at the front and the back.
        const body = Buffer.from(template);
        const id = counter++;
        body.writeUInt32BE(id, 0);
        body.writeUInt32BE(id, Math.max(0, body.length - 4));
        const r = request(o.service, o.port, body);
        socket.write(r.first);
        let status = await reader.next();
        if (status === 100) {
          socket.write(r.rest);
          status = await reader.next();
        }
        statuses[status] = (statuses[status] ?? 0) + 1;
        requests++;
        bytes += body.length;
      }
    } finally {
      socket.destroy();
    }
  };
  await Promise.all(Array.from({ length: o.connections }, worker));
  return { requests, bytes, seconds: (performance.now() - t0) / 1000, statuses };
}
