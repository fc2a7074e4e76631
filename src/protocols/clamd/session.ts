/**
 * One clamd connection: the parser's events turned into scans and replies (the I/O shell around
 * parser.ts). Outside IDSESSION one command is answered and the connection closes; inside, commands
 * carry ids, scans run concurrently and reply as they finish, and END closes once all have replied.
 * Time limits as clamd: a command must arrive within CommandReadTimeout (ReadTimeout inside a
 * session), INSTREAM data must keep coming within ReadTimeout; either expiry answers
 * `COMMAND READ TIMED OUT` and closes. A client that disconnects aborts its scans.
 */
import type { Socket } from 'node:net';
import type { ScanInput, Verdict } from '../../engine/types.js';
import type { ClamdContext } from './context.js';
import { InstreamBody } from './instream.js';
import { type ClamdCommandName, type ClamdEvent, ClamdParser, type Terminator } from './parser.js';
import { scanPath } from './paths.js';
import {
  COMMAND_READ_TIMED_OUT,
  COMMAND_UNAVAILABLE,
  INVALID_IN_SESSION,
  LEGACY_IN_SESSION,
  type ReplyTarget,
  reply,
  STREAM_LIMIT,
  statsText,
  UNKNOWN_COMMAND,
  verdictText,
  versionCommandsText,
  versionText,
} from './replies.js';

/** INSTREAM bodies up to this size are scanned whole at their end; larger ones are streamed into the scan. */
const INSTREAM_HOLD = 1024 * 1024;

/** Accepted inside IDSESSION (session.c execute_or_dispatch_command). */
const IN_SESSION = new Set<ClamdCommandName>([
  'FILDES',
  'SCAN',
  'END',
  'INSTREAM',
  'VERSION',
  'PING',
  'STATS',
  'VERSIONCOMMANDS',
]);
/** Commands that cannot exist here: FILDES needs SCM_RIGHTS (no Node API); a network client does not stop a shared service. */
const UNAVAILABLE = new Set<ClamdCommandName>(['FILDES', 'SHUTDOWN', 'QUIT', 'DETSTATS', 'DETSTATSCLEAR']);

export class ClamdSession {
  private readonly parser: ClamdParser;
  private readonly abort = new AbortController();
  private inSession = false;
  private nextId = 1;
  /** No more commands will be taken (one answered outside a session, END, an error). */
  private done = false;
  private pending = 0;
  private body: InstreamBody | null = null;
  private timer: NodeJS.Timeout | null = null;
  private paused = false;
  private readonly client: string;

  constructor(
    private readonly ctx: ClamdContext,
    private readonly socket: Socket,
  ) {
    this.parser = new ClamdParser({ streamMaxLength: ctx.cfg.streamMaxLength });
    this.client = socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : 'local';
  }

  start(): void {
    this.socket.on('data', (d: Buffer) => this.onData(d));
    this.socket.on('end', () => this.onClientEnd());
    this.socket.on('close', () => this.teardown());
    this.arm(this.ctx.cfg.headerTimeout);
  }

  private onData(d: Buffer): void {
    for (const ev of this.parser.push(d)) this.handle(ev);
    if (this.paused) this.disarm();
    else if (this.parser.inStream) this.arm(this.ctx.cfg.readTimeout);
    else if (this.done || (this.inSession && this.pending > 0)) this.disarm();
    else this.arm(this.inSession ? this.ctx.cfg.readTimeout : this.ctx.cfg.headerTimeout);
  }

  private handle(ev: ClamdEvent): void {
    switch (ev.kind) {
      case 'chunk':
        if (this.body && !this.body.write(ev.data) && !this.paused) {
          // The scan is behind (or waits for a slot): stop reading; the wait is ours, not a slow client.
          this.paused = true;
          this.socket.pause();
          this.body.onDrain(() => {
            this.paused = false;
            this.socket.resume();
            this.arm(this.ctx.cfg.readTimeout);
          });
        }
        return;
      case 'stream-end':
        this.body?.end();
        this.body = null;
        return;
      case 'stream-limit':
        this.failStream(new Error('INSTREAM size limit exceeded'));
        this.fatal({ id: this.inSession ? this.nextId - 1 : 0, term: ev.term }, STREAM_LIMIT);
        return;
      case 'too-long':
        this.ctx.log.info({ client: this.client }, 'clamd command too long: closing');
        this.socket.destroy();
        return;
      case 'unknown':
        if (!this.done) this.fatal(this.target(ev.term), UNKNOWN_COMMAND);
        return;
      case 'command':
        if (!this.done) this.command(ev.name, ev.arg, ev.term, ev.legacy);
        return;
    }
  }

  private target(term: Terminator): ReplyTarget {
    return { id: this.inSession ? this.nextId++ : 0, term };
  }

  private command(name: ClamdCommandName, arg: string | null, term: Terminator, legacy: boolean): void {
    if (this.inSession && legacy) {
      this.fatal({ id: this.nextId, term }, LEGACY_IN_SESSION);
      return;
    }
    if (this.inSession && !IN_SESSION.has(name)) {
      this.fatal(this.target(term), INVALID_IN_SESSION);
      return;
    }
    if (UNAVAILABLE.has(name)) {
      this.fatal(this.target(term), COMMAND_UNAVAILABLE);
      return;
    }
    if (name === 'IDSESSION') {
      this.inSession = true;
      this.nextId = 1;
      return;
    }
    if (name === 'END') {
      if (!this.inSession) {
        this.fatal(this.target(term), UNKNOWN_COMMAND);
        return;
      }
      this.done = true;
      this.maybeClose();
      return;
    }
    const to = this.target(term);
    if (!this.inSession) this.done = true;
    switch (name) {
      case 'PING': {
        this.answer(to, 'PONG');
        return;
      }
      case 'VERSION': {
        this.answer(to, versionText(this.ctx.version()));
        return;
      }
      case 'VERSIONCOMMANDS': {
        this.answer(to, versionCommandsText(this.ctx.version()));
        return;
      }
      case 'STATS': {
        this.answer(to, statsText(this.ctx.stats()));
        return;
      }
      case 'RELOAD':
        this.ctx.reload();
        {
          this.answer(to, 'RELOADING');
          return;
        }
      case 'INSTREAM': {
        this.instream(to);
        return;
      }
      default: {
        this.paths(to, name as 'SCAN' | 'CONTSCAN' | 'MULTISCAN' | 'ALLMATCHSCAN', arg!);
        return;
      }
    }
  }

  private instream(to: ReplyTarget): void {
    const body = new InstreamBody(INSTREAM_HOLD);
    this.body = body;
    this.track(async () => {
      const input = await body.input;
      if (!input) return;
      const v = await this.scan(input, 'stream');
      // A stream cut short (size limit, timeout, client gone) has had its answer already.
      if (!body.abandoned) this.write(reply(to, verdictText('stream', v)));
    });
  }

  private paths(
    to: ReplyTarget,
    name: 'SCAN' | 'CONTSCAN' | 'MULTISCAN' | 'ALLMATCHSCAN',
    arg: string,
  ): void {
    this.track(async () => {
      await scanPath(arg, name, {
        scan: (path, allMatches) => this.scan({ path }, path, allMatches),
        parallel: this.ctx.slots.max,
        maxDepth: this.ctx.cfg.maxDirectoryRecursion,
        signal: this.abort.signal,
        send: (text) => this.write(reply(to, text)),
      });
    });
  }

  /** One scan in a slot; an infected verdict is also a security event. */
  private async scan(input: ScanInput, name: string, allMatches = false): Promise<Verdict> {
    const v = await this.ctx.slots.run(() =>
      this.ctx.scanner.scan(input, { name, signal: this.abort.signal, allMatches }),
    );
    if (v.status === 'infected') {
      this.ctx.events.emit({
        kind: 'verdict',
        listener: this.ctx.cfg.name,
        protocol: 'clamd',
        client: this.client,
        object: name,
        signature: v.signature,
        location: v.location,
        action: 'blocked',
      });
    } else if (v.status === 'error' && !this.abort.signal.aborted) {
      this.ctx.log.warn(
        { client: this.client, object: name, code: v.code, reason: v.reason },
        'clamd scan error',
      );
    }
    return v;
  }

  private track(job: () => Promise<void>): void {
    this.pending++;
    job()
      .catch((e: Error) =>
        this.ctx.log.error({ client: this.client, err: e.message }, 'clamd command failed'),
      )
      .finally(() => {
        this.pending--;
        if (this.inSession && this.pending === 0 && !this.done) this.arm(this.ctx.cfg.readTimeout);
        this.maybeClose();
      });
  }

  private answer(to: ReplyTarget, text: string): void {
    this.write(reply(to, text));
    this.maybeClose();
  }

  /** Replies, refuses further commands and closes once the scans in flight have answered. */
  private fatal(to: ReplyTarget, text: string): void {
    this.write(reply(to, text));
    this.done = true;
    this.failStream(new Error('connection ending'));
    this.maybeClose();
  }

  private maybeClose(): void {
    if (this.done && this.pending === 0 && !this.socket.destroyed) {
      this.disarm();
      this.socket.end();
    }
  }

  private write(b: Buffer): void {
    if (!this.socket.destroyed && this.socket.writable) this.socket.write(b);
  }

  private failStream(e: Error): void {
    this.body?.fail(e);
    this.body = null;
  }

  /** The client half-closed: scans in flight still answer (clamd keeps a SHUT_WR client). */
  private onClientEnd(): void {
    this.failStream(new Error('client ended the stream before its end'));
    this.done = true;
    this.maybeClose();
  }

  private teardown(): void {
    this.disarm();
    // Only scans still running need telling (an abort costs an exception object per connection).
    if (this.pending > 0) this.abort.abort();
    this.failStream(new Error('connection closed'));
  }

  private arm(ms: number): void {
    this.disarm();
    if (!(ms > 0)) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.write(COMMAND_READ_TIMED_OUT);
      this.done = true;
      this.failStream(new Error('read timed out'));
      this.socket.end();
      setTimeout(() => this.socket.destroy(), 1000).unref();
    }, ms);
    this.timer.unref();
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
