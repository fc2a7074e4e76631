/**
 * A small Redis client: RESP2 (https://redis.io/docs/latest/develop/reference/protocol-spec/)
 * requests as arrays of bulk strings, a sans-IO reply reader, pipelined commands answered in order.
 * Only what the verdict cache needs (AUTH, SELECT, PING, GET, SET … PX); no native build, no
 * dependency. The socket is referenced only while commands are pending, so an idle cache never keeps
 * a CLI process alive.
 */
import net from 'node:net';
import { ScangateError } from '../errors.js';

export type RespValue = string | number | null | Buffer | RespValue[] | RespError;

export class RespError extends ScangateError {
  constructor(message: string) {
    super('ERR_REDIS_REPLY', message);
  }
}

export function encodeCommand(args: (string | Buffer)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = typeof a === 'string' ? Buffer.from(a, 'utf8') : a;
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

const MAX_BULK = 512 * 1024 * 1024;
const MAX_LINE = 64 * 1024;

/**
 * Reads RESP2 replies from bytes split anywhere. Bulk strings come back as Buffers, simple strings
 * as strings, errors as RespError values (not thrown: they answer one command). Malformed input
 * throws, after which the connection must be dropped.
 */
export class RespReader {
  private buf: Buffer = Buffer.alloc(0);

  push(data: Buffer): RespValue[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, data]) : data;
    const out: RespValue[] = [];
    for (;;) {
      const r = this.parse(0);
      if (!r) break;
      out.push(r.value);
      this.buf = this.buf.subarray(r.end);
    }
    if (this.buf.length > 0 && this.buf.indexOf(10) < 0 && this.buf.length > MAX_LINE)
      throw new ScangateError('ERR_REDIS_PROTOCOL', 'redis reply line too long');
    return out;
  }

  private line(at: number): { text: string; end: number } | null {
    const lf = this.buf.indexOf(10, at);
    if (lf < 0) return null;
    if (lf === at || this.buf[lf - 1] !== 13)
      throw new ScangateError('ERR_REDIS_PROTOCOL', 'redis reply line not ended by CRLF');
    return { text: this.buf.toString('latin1', at + 1, lf - 1), end: lf + 1 };
  }

  private parse(at: number): { value: RespValue; end: number } | null {
    if (at >= this.buf.length) return null;
    const type = this.buf[at];
    const l = this.line(at);
    if (!l) return null;
    switch (type) {
      case 0x2b: // +
        return { value: l.text, end: l.end };
      case 0x2d: // -
        return { value: new RespError(l.text), end: l.end };
      case 0x3a: // :
        return { value: integer(l.text), end: l.end };
      case 0x24: {
        // $
        const n = integer(l.text);
        if (n === -1) return { value: null, end: l.end };
        if (n < 0 || n > MAX_BULK) throw new ScangateError('ERR_REDIS_PROTOCOL', `bad bulk length ${n}`);
        if (this.buf.length < l.end + n + 2) return null;
        if (this.buf[l.end + n] !== 13 || this.buf[l.end + n + 1] !== 10)
          throw new ScangateError('ERR_REDIS_PROTOCOL', 'bulk string not ended by CRLF');
        return { value: Buffer.from(this.buf.subarray(l.end, l.end + n)), end: l.end + n + 2 };
      }
      case 0x2a: {
        // *
        const n = integer(l.text);
        if (n === -1) return { value: null, end: l.end };
        if (n < 0 || n > 1_000_000) throw new ScangateError('ERR_REDIS_PROTOCOL', `bad array length ${n}`);
        const items: RespValue[] = [];
        let end = l.end;
        for (let i = 0; i < n; i++) {
          const r = this.parse(end);
          if (!r) return null;
          items.push(r.value);
          end = r.end;
        }
        return { value: items, end };
      }
      default:
        throw new ScangateError('ERR_REDIS_PROTOCOL', `unknown redis reply type 0x${type!.toString(16)}`);
    }
  }
}

function integer(text: string): number {
  if (!/^-?\d{1,18}$/.test(text)) throw new ScangateError('ERR_REDIS_PROTOCOL', `bad integer "${text}"`);
  return Number(text);
}

export interface RedisTarget {
  host?: string;
  port?: number;
  path?: string;
  password?: string;
  username?: string;
  db?: number;
}

/** `redis://[user:pass@]host[:port][/db]`, `unix:///path.sock` or a bare `/path.sock`. */
export function parseRedisUrl(url: string): RedisTarget {
  if (url.startsWith('/')) return { path: url };
  const u = new URL(url);
  if (u.protocol === 'unix:') return { path: u.pathname };
  if (u.protocol !== 'redis:') throw new ScangateError('ERR_CONFIG', `not a redis:// URL: ${u.protocol}`);
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : undefined;
  if (db !== undefined && !Number.isInteger(db))
    throw new ScangateError('ERR_CONFIG', 'redis database must be a number');
  return {
    host: u.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db,
  };
}

interface Pending {
  resolve(v: RespValue): void;
  reject(e: Error): void;
}

export class RespClient {
  private socket: net.Socket | null = null;
  private ready: Promise<void> | null = null;
  private readonly pending: Pending[] = [];
  private closed = false;

  constructor(private readonly target: RedisTarget) {}

  /** Sends one command; resolves with its reply (a RespError value is returned, not thrown). */
  async command(args: (string | Buffer)[]): Promise<RespValue> {
    if (this.closed) throw new ScangateError('ERR_REDIS_CLOSED', 'redis client closed');
    await this.connect();
    return this.send(args);
  }

  private send(args: (string | Buffer)[]): Promise<RespValue> {
    const socket = this.socket;
    if (!socket || socket.destroyed)
      return Promise.reject(new ScangateError('ERR_REDIS_DOWN', 'redis connection lost'));
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      socket.ref();
      socket.write(encodeCommand(args));
    });
  }

  private connect(): Promise<void> {
    if (this.socket && !this.socket.destroyed && this.ready) return this.ready;
    const t = this.target;
    const socket = t.path ? net.connect(t.path) : net.connect(t.port ?? 6379, t.host ?? '127.0.0.1');
    socket.setNoDelay(true);
    this.socket = socket;
    const reader = new RespReader();
    socket.on('data', (d: Buffer) => {
      let values: RespValue[];
      try {
        values = reader.push(d);
      } catch (e) {
        socket.destroy(e as Error);
        return;
      }
      for (const v of values) this.pending.shift()?.resolve(v);
      if (this.pending.length === 0) socket.unref();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      if (this.socket === socket) {
        this.socket = null;
        this.ready = null;
      }
      const err = new ScangateError('ERR_REDIS_DOWN', 'redis connection closed');
      for (const p of this.pending.splice(0)) p.reject(err);
    });
    this.ready = new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('close', () => reject(new ScangateError('ERR_REDIS_DOWN', 'redis is not reachable')));
    }).then(async () => {
      if (t.password)
        await this.expectOk(t.username ? ['AUTH', t.username, t.password] : ['AUTH', t.password]);
      if (t.db) await this.expectOk(['SELECT', String(t.db)]);
      socket.unref();
    });
    this.ready.catch(() => {});
    return this.ready;
  }

  private async expectOk(args: string[]): Promise<void> {
    const r = await this.send(args);
    if (r instanceof RespError) throw r;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.socket?.destroy();
    this.socket = null;
  }
}
