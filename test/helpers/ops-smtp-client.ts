/**
 * A bare SMTP client over one TCP socket for the operations tests: it sends exactly the bytes a test
 * writes (so wire byte counters can be checked against them) and reads whole replies, including
 * multi-line ones (RFC 5321 §4.2.1). A connection that closes before a reply yields code 0.
 */
import { connect, type Socket } from 'node:net';

export interface SmtpReply {
  code: number;
  text: string;
}

export class RawSmtpClient {
  private buf = '';
  private waiters: (() => void)[] = [];
  private ended = false;

  private constructor(readonly socket: Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.buf += d;
      this.wake();
    });
    const end = () => {
      this.ended = true;
      this.wake();
    };
    socket.on('end', end);
    socket.on('close', end);
    socket.on('error', end);
  }

  static connect(port: number, host = '127.0.0.1'): Promise<RawSmtpClient> {
    return new Promise((resolve, reject) => {
      const s = connect(port, host);
      s.once('connect', () => {
        s.off('error', reject);
        resolve(new RawSmtpClient(s));
      });
      s.once('error', reject);
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** The next complete reply; code 0 when the server closed first. */
  async reply(): Promise<SmtpReply> {
    for (;;) {
      const lines = this.buf.split('\r\n');
      let consumed = 0;
      for (let i = 0; i < lines.length - 1; i++) {
        const l = lines[i]!;
        consumed += l.length + 2;
        if (/^\d{3} /.test(l) || /^\d{3}$/.test(l)) {
          const text = this.buf.slice(0, consumed);
          this.buf = this.buf.slice(consumed);
          return { code: Number(l.slice(0, 3)), text };
        }
      }
      if (this.ended) return { code: 0, text: this.buf };
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  write(data: string | Buffer): void {
    if (!this.socket.destroyed) this.socket.write(data);
  }

  async command(line: string): Promise<SmtpReply> {
    this.write(`${line}\r\n`);
    return this.reply();
  }

  close(): void {
    this.socket.destroy();
  }
}
