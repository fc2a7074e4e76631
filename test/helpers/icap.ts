/**
 * ICAP test tools written from RFC 3507 independently of src/protocols/icap: a request builder
 * (encapsulated HTTP heads, chunked body, preview with or without ieof) and a raw-socket client
 * that reads responses (100 Continue, 204, 200 with encapsulated heads and a chunked body).
 */
import { type AddressInfo, connect, type Socket } from 'node:net';
import type { EventSink } from '../../src/admin/events.js';
import { configSchema, type IcapListenerConfig } from '../../src/config/schema.js';
import type { Scanner } from '../../src/engine/types.js';
import { silentLogger } from '../../src/logger.js';
import type { RunningService } from '../../src/net/service.js';
import { startIcapListener } from '../../src/protocols/icap/index.js';

/** Starts scangate's ICAP listener on an ephemeral loopback port with `overrides` to its config. */
export async function startTestIcap(o: {
  dataDir: string;
  scanner: Scanner;
  events: EventSink;
  overrides?: Partial<Record<keyof IcapListenerConfig, unknown>>;
}): Promise<{ service: RunningService; port: number }> {
  const config = configSchema.parse({
    dataDir: o.dataDir,
    listeners: [{ name: 'icap', protocol: 'icap', listen: '127.0.0.1:0', ...o.overrides }],
  });
  const service = await startIcapListener(config.listeners[0] as IcapListenerConfig, {
    config,
    scanner: o.scanner,
    logger: silentLogger,
    events: o.events,
  });
  return { service, port: (service.address as AddressInfo).port };
}

export interface RequestSpec {
  method?: 'REQMOD' | 'RESPMOD' | 'OPTIONS' | string;
  service?: string;
  host?: string;
  /** Encapsulated HTTP request head (CRLF CRLF added when missing). */
  reqHead?: string;
  resHead?: string;
  /** null: null-body. */
  body?: Buffer | null;
  /** Sizes of the ICAP chunks the body is cut into (cycled); default one chunk. */
  chunkSizes?: number[];
  preview?: number;
  allow204?: boolean;
  headers?: string[];
}

export interface BuiltRequest {
  /** Everything up to the end of the preview (or the whole message without one). */
  first: Buffer;
  /** The body after the preview, sent after 100 Continue; empty when the preview held it all. */
  rest: Buffer;
  previewHoldsAll: boolean;
}

function head(h: string): Buffer {
  return Buffer.from(h.endsWith('\r\n\r\n') ? h : `${h.replace(/(\r\n)*$/, '')}\r\n\r\n`, 'latin1');
}

export function chunked(body: Buffer, sizes: number[] = [], last = '0\r\n\r\n'): Buffer {
  const parts: Buffer[] = [];
  let i = 0;
  let k = 0;
  while (i < body.length) {
    const n = Math.max(1, Math.min(sizes.length ? sizes[k++ % sizes.length]! : body.length, body.length - i));
    parts.push(Buffer.from(`${n.toString(16)}\r\n`), body.subarray(i, i + n), Buffer.from('\r\n'));
    i += n;
  }
  parts.push(Buffer.from(last));
  return Buffer.concat(parts);
}

export function buildRequest(spec: RequestSpec): BuiltRequest {
  const method = spec.method ?? 'RESPMOD';
  const sections: Array<[string, Buffer]> = [];
  if (spec.reqHead !== undefined) sections.push(['req-hdr', head(spec.reqHead)]);
  if (spec.resHead !== undefined) sections.push(['res-hdr', head(spec.resHead)]);
  const bodyName = method === 'REQMOD' ? 'req-body' : method === 'OPTIONS' ? 'opt-body' : 'res-body';
  const enc: string[] = [];
  let off = 0;
  for (const [n, b] of sections) {
    enc.push(`${n}=${off}`);
    off += b.length;
  }
  const body = spec.body ?? null;
  enc.push(`${body ? bodyName : 'null-body'}=${off}`);
  const lines = [
    `${method} icap://${spec.host ?? '127.0.0.1'}/${spec.service ?? 'avscan'} ICAP/1.0`,
    `Host: ${spec.host ?? '127.0.0.1'}`,
    `Encapsulated: ${enc.join(', ')}`,
  ];
  if (spec.allow204) lines.push('Allow: 204');
  if (spec.preview !== undefined && body) lines.push(`Preview: ${spec.preview}`);
  lines.push(...(spec.headers ?? []));
  const icapHead = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
  const heads = Buffer.concat([icapHead, ...sections.map(([, b]) => b)]);
  if (!body) return { first: heads, rest: Buffer.alloc(0), previewHoldsAll: true };
  if (spec.preview === undefined)
    return {
      first: Buffer.concat([heads, chunked(body, spec.chunkSizes)]),
      rest: Buffer.alloc(0),
      previewHoldsAll: true,
    };
  const all = body.length <= spec.preview;
  const pv = body.subarray(0, spec.preview);
  const first = Buffer.concat([heads, chunked(pv, spec.chunkSizes, all ? '0; ieof\r\n\r\n' : '0\r\n\r\n')]);
  const rest = all ? Buffer.alloc(0) : chunked(body.subarray(spec.preview), spec.chunkSizes);
  return { first, rest, previewHoldsAll: all };
}

export interface IcapResponse {
  status: number;
  headers: Record<string, string>;
  /** Encapsulated heads by name. */
  sections: Record<string, string>;
  body: Buffer | null;
}

/** A raw ICAP client on one connection: send bytes, read whole responses in order. */
export class IcapClient {
  private buf = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  closed = false;

  private constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  static open(port: number, host = '127.0.0.1'): Promise<IcapClient> {
    return new Promise((resolve, reject) => {
      const s = connect(port, host, () => resolve(new IcapClient(s)));
      s.once('error', reject);
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private async need(pred: () => number): Promise<number> {
    for (;;) {
      const n = pred();
      if (n >= 0) return n;
      if (this.closed)
        throw new Error(
          `connection closed (buffered: ${JSON.stringify(this.buf.toString('latin1').slice(0, 200))})`,
        );
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  write(data: Buffer | string): void {
    this.socket.write(data);
  }

  /** Resolves true once the server has closed the connection (and all its bytes were read). */
  async waitClosed(): Promise<boolean> {
    await this.need(() => (this.closed ? 0 : -1));
    return true;
  }

  async read(): Promise<IcapResponse> {
    const end = await this.need(() => this.buf.indexOf('\r\n\r\n'));
    const lines = this.buf.toString('latin1', 0, end).split('\r\n');
    this.buf = this.buf.subarray(end + 4);
    const m = /^ICAP\/1\.0 (\d{3}) /.exec(lines[0]!);
    if (!m) throw new Error(`bad status line ${lines[0]}`);
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const c = l.indexOf(':');
      headers[l.slice(0, c).toLowerCase()] = l.slice(c + 1).trim();
    }
    const status = Number(m[1]);
    const sections: Record<string, string> = {};
    let body: Buffer | null = null;
    const enc = headers.encapsulated;
    if (status === 100 || !enc) return { status, headers, sections, body };
    const entities = enc.split(',').map((e) => {
      const [n, o] = e.trim().split('=');
      return { name: n!, offset: Number(o) };
    });
    const last = entities[entities.length - 1]!;
    await this.need(() => (this.buf.length >= last.offset ? 0 : -1));
    for (let i = 0; i < entities.length - 1; i++)
      sections[entities[i]!.name] = this.buf.toString('latin1', entities[i]!.offset, entities[i + 1]!.offset);
    this.buf = this.buf.subarray(last.offset);
    if (last.name !== 'null-body') body = await this.readChunked();
    return { status, headers, sections, body };
  }

  private async readChunked(): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (;;) {
      const eol = await this.need(() => this.buf.indexOf('\r\n'));
      const size = Number.parseInt(this.buf.toString('latin1', 0, eol).split(';')[0]!, 16);
      if (size === 0) {
        const end = await this.need(() => this.buf.indexOf('\r\n\r\n', eol));
        this.buf = this.buf.subarray(end + 4);
        return Buffer.concat(parts);
      }
      await this.need(() => (this.buf.length >= eol + 2 + size + 2 ? 0 : -1));
      parts.push(Buffer.from(this.buf.subarray(eol + 2, eol + 2 + size)));
      this.buf = this.buf.subarray(eol + 2 + size + 2);
    }
  }

  /** Sends a built request, answering a 100 Continue with the rest; returns the final response. */
  async exchange(req: BuiltRequest): Promise<IcapResponse & { continued: boolean }> {
    this.write(req.first);
    let r = await this.read();
    let continued = false;
    if (r.status === 100) {
      continued = true;
      this.write(req.rest);
      r = await this.read();
    }
    return { ...r, continued };
  }

  close(): void {
    this.socket.destroy();
  }
}
