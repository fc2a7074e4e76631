/**
 * One ICAP client connection (RFC 3507): requests are answered one at a time, in order, on a
 * persistent connection (pipelined requests simply wait in the parser).
 *
 * REQMOD and RESPMOD bodies go through the HTTP gateway's body scanner (ScannedBody): held whole in
 * a spool (memory, then a temp file) up to holdLimit, so a clean body can be answered with 204 and
 * an infected one with the block page before any byte of it left; larger bodies stream back in a
 * 200 with a held-back tail, and are cut (no last chunk) if the verdict comes back infected.
 * Content-Encoding (gzip, deflate, br) is decoded for scanning exactly as in the HTTP gateway.
 *
 * 204 (§4.6) only when the client allowed it (Allow: 204) or the whole body came in a preview
 * (ieof); otherwise the message is echoed back byte for byte. A scanner error answers 500 unless
 * policy lets the object through (onError: allow).
 */
import type { Socket } from 'node:net';
import type { EventAction } from '../../admin/events.js';
import type { IcapListenerConfig } from '../../config/schema.js';
import type { Logger } from '../../logger.js';
import { formatHostPort } from '../../net/connect.js';
import type { ServiceDeps } from '../../net/service.js';
import { type BodyOutcome, type BodySink, ScannedBody } from '../http/body-scanner.js';
import { objectName } from '../http/exchange.js';
import { getHeader } from '../http/headers.js';
import { endGracefully, send } from '../http/io.js';
import { blockResponse, serializeProxyResponse } from '../http/responses.js';
import { encodeChunk, encodeLastChunk } from '../http/serialize.js';
import type { EncapsulatedRequest, IcapRequest } from './messages.js';
import { istagFor, optionsFields, serviceMethods } from './options.js';
import { IcapParser } from './parser.js';
import { IcapReader } from './reader.js';
import {
  adaptedHead,
  CONTINUE,
  errorReply,
  noContent,
  optionsReply,
  type ResponseCommon,
} from './serialize.js';

export interface IcapContext {
  cfg: IcapListenerConfig;
  deps: ServiceDeps;
  log: Logger;
  spoolDir: string;
  shutdown: AbortSignal;
}

type Next = 'continue' | 'close';

export class IcapSession {
  private readonly reader: IcapReader;
  private readonly client: string;
  private headTimer: NodeJS.Timeout | null = null;
  private headTimedOut = false;

  constructor(
    private readonly ctx: IcapContext,
    private readonly socket: Socket,
  ) {
    this.reader = new IcapReader(socket, new IcapParser({ maxHeaderSize: ctx.cfg.maxHeaderSize }));
    this.client = formatHostPort(socket.remoteAddress ?? '?', socket.remotePort ?? 0);
  }

  async run(): Promise<void> {
    const onShutdown = () => {
      // Only a connection between requests is closed at once; one in flight finishes first.
      if (this.reader.parser.idle) this.reader.interrupt();
    };
    this.ctx.shutdown.addEventListener('abort', onShutdown);
    try {
      for (;;) {
        if (this.ctx.shutdown.aborted && this.reader.parser.idle) break;
        const req = await this.nextRequest();
        if (!req) break;
        if ((await this.handle(req)) === 'close') break;
      }
    } catch (e) {
      this.ctx.log.debug({ err: (e as Error).message, client: this.client }, 'icap session ended by error');
      this.socket.destroy();
    } finally {
      this.ctx.shutdown.removeEventListener('abort', onShutdown);
      this.stopHeadTimer();
    }
    if (!this.socket.destroyed) endGracefully(this.socket);
  }

  private common(req?: IcapRequest, close = false): ResponseCommon {
    return {
      istag: istagFor(this.ctx.deps.scanner.version()),
      close: close || req?.close === true || this.ctx.shutdown.aborted,
    };
  }

  private async reply(data: Buffer | Buffer[]): Promise<void> {
    await send(this.socket, data);
  }

  /**
   * The next request head. A head must be complete within headerTimeout of its first byte however
   * slowly it trickles (slowloris); an idle keep-alive connection is left to the idle timeout.
   */
  private async nextRequest(): Promise<IcapRequest | null> {
    this.headTimedOut = false;
    this.reader.onBytes = () => this.startHeadTimer();
    if (!this.reader.parser.idle) this.startHeadTimer();
    let ev: Awaited<ReturnType<IcapReader['next']>>;
    try {
      ev = await this.reader.next();
    } finally {
      this.reader.onBytes = null;
      this.stopHeadTimer();
    }
    if (this.headTimedOut) {
      await this.reply(errorReply(408, this.common(undefined, true), 'request head not received in time'));
      return null;
    }
    if (ev?.type === 'request') return ev.request;
    if (ev?.type === 'error' && ev.error.code !== 'ERR_ICAP_TRUNCATED')
      await this.reply(errorReply(ev.error.status, this.common(undefined, true), ev.error.message));
    return null;
  }

  private startHeadTimer(): void {
    if (this.headTimer || !(this.ctx.cfg.headerTimeout > 0)) return;
    this.headTimer = setTimeout(() => {
      this.headTimer = null;
      this.headTimedOut = true;
      this.reader.interrupt();
    }, this.ctx.cfg.headerTimeout);
    this.headTimer.unref();
  }

  private stopHeadTimer(): void {
    if (this.headTimer) clearTimeout(this.headTimer);
    this.headTimer = null;
  }

  private async handle(req: IcapRequest): Promise<Next> {
    const methods = serviceMethods(req.service);
    if (!methods) return this.refuse(req, 404, `no ICAP service "${req.service}" here`);
    if (req.method === 'OPTIONS') {
      if (!(await this.skipBody())) return 'close';
      const v = this.ctx.deps.scanner.version();
      const common = this.common(req);
      await this.reply(optionsReply(common, optionsFields(req.service, this.ctx.cfg, v)));
      return common.close ? 'close' : 'continue';
    }
    if (!methods.includes(req.method))
      return this.refuse(req, 405, `service "${req.service}" does not do ${req.method}`);
    if (req.body === null) return this.bodyless(req);
    // The preview is held whole (see scan()), so it may not exceed what we would hold anyway.
    if (req.preview !== null && req.preview > Math.max(this.ctx.cfg.previewSize, this.ctx.cfg.holdLimit))
      return this.refuse(req, 400, `Preview ${req.preview} exceeds what this server holds`);
    return this.scan(req);
  }

  /** An error for a request we will not process: keep the connection only if no body follows. */
  private async refuse(req: IcapRequest, status: number, reason: string): Promise<Next> {
    const keep = req.body === null && !req.close && (await this.skipBody());
    await this.reply(errorReply(status, this.common(req, !keep), reason));
    return keep ? 'continue' : 'close';
  }

  /** Reads and drops a body we do not need (an OPTIONS opt-body); false if the client broke off. */
  private async skipBody(): Promise<boolean> {
    for (;;) {
      const ev = await this.reader.next();
      if (ev?.type === 'end') return true;
      if (ev?.type === 'preview-end') {
        await this.reply(CONTINUE);
        this.reader.parser.continueBody();
        continue;
      }
      if (ev?.type !== 'body') return false;
    }
  }

  /** null-body: nothing to scan, the message is unmodified. */
  private async bodyless(req: IcapRequest): Promise<Next> {
    if (!(await this.skipBody())) return 'close';
    const common = this.common(req);
    if (req.allow204) await this.reply(noContent(common));
    else await this.reply(adaptedHead(common, this.echoHeads(req), 'null-body'));
    return common.close ? 'close' : 'continue';
  }

  /** The heads an unmodified answer carries: the message being adapted, as received. */
  private echoHeads(req: IcapRequest): Array<{ name: 'req-hdr' | 'res-hdr'; raw: Buffer }> {
    if (req.method === 'RESPMOD') return req.resHdr ? [{ name: 'res-hdr', raw: req.resHdr.raw }] : [];
    return req.reqHdr ? [{ name: 'req-hdr', raw: req.reqHdr.raw }] : [];
  }

  private async scan(req: IcapRequest): Promise<Next> {
    const { cfg, deps } = this.ctx;
    const common = this.common(req);
    const url = requestUrl(req.reqHdr);
    const message = req.method === 'RESPMOD' ? req.resHdr : req.reqHdr;
    // A client with a copy (Allow: 204) waits for the verdict; one without streams and must see the
    // answer flow early (schema: icap noBackup).
    const limits = req.allow204 ? cfg : cfg.noBackup;
    // The verdict decides between 204 and an echo only once the body is complete (finish()).
    const answer = { finishing: false, may204: req.allow204, sent204: false };
    const sink: BodySink = {
      begin: async () => {
        if (answer.finishing && answer.may204) {
          answer.sent204 = true;
          await this.reply(noContent(common));
          return;
        }
        await this.reply(adaptedHead(common, this.echoHeads(req), req.body!));
      },
      write: (c) => (answer.sent204 ? Promise.resolve() : this.reply(encodeChunk(c))),
    };
    const body = new ScannedBody(
      {
        scanner: deps.scanner,
        // A preview is always held: answering before 100 Continue would end the client's body (§4.5).
        holdLimit: Math.max(limits.holdLimit, req.preview ?? 0),
        keepBack: limits.keepBack,
        contentEncoding: message ? getHeader(message.head.headers, 'content-encoding') : undefined,
        name: objectName(url, 'body'),
        spoolDir: this.ctx.spoolDir,
        spoolMemory: cfg.spoolMemory,
      },
      sink,
    );
    let continued = false;
    for (;;) {
      const ev = await this.reader.next();
      if (ev?.type === 'body') {
        await body.write(ev.data);
        // Infected while streaming: cut now (below), the rest of the body is not read.
        if (body.decided) break;
        continue;
      }
      if (ev?.type === 'preview-end') {
        await this.reply(CONTINUE);
        this.reader.parser.continueBody();
        continued = true;
        continue;
      }
      if (ev?.type === 'end') {
        // §4.6: a 204 answering a preview that held the whole body needs no Allow: 204.
        if (req.preview !== null && ev.ieof && !continued) answer.may204 = true;
        break;
      }
      // The client broke off or sent bad framing mid-body: nothing is answered from half a body.
      await body.abortScan();
      if (ev?.type === 'error' && !body.streamed)
        await this.reply(errorReply(ev.error.status, this.common(req, true), ev.error.message)).catch(
          () => {},
        );
      return 'close';
    }
    answer.finishing = true;
    const onError = cfg.onError ?? deps.config.engine.onError;
    const outcome = await body.finish(onError === 'allow');
    this.report(url, req.reqHdr, outcome);
    if (outcome.deliver) {
      if (!answer.sent204) await this.reply(encodeLastChunk());
      return common.close ? 'close' : 'continue';
    }
    if (outcome.streamed) {
      // Part of the body already left: cut it (no last chunk), so the client discards the object.
      this.socket.destroy();
      return 'close';
    }
    const v = outcome.verdict;
    if (v.status === 'infected') await this.reply(blockReply(common, url, v.signature, v.location));
    else await this.reply(errorReply(500, common, `scan failed: ${v.reason}`));
    // Answered before the body's end (decided early): the rest is unread, so the connection ends here.
    return common.close || body.decided ? 'close' : 'continue';
  }

  private report(url: string, reqHdr: EncapsulatedRequest | null, outcome: BodyOutcome): void {
    const v = outcome.verdict;
    if (v.status === 'clean') return;
    const action: EventAction = outcome.deliver
      ? 'allowed'
      : outcome.streamed
        ? 'partiallyblocked'
        : 'blocked';
    this.ctx.deps.events.emit({
      kind: 'verdict',
      listener: this.ctx.cfg.name,
      protocol: 'icap',
      client: this.client,
      // The origin the proxy talks to, as its request names it.
      ...(reqHdr
        ? { server: getHeader(reqHdr.head.headers, 'host') ?? url.replace(/^[a-z]+:\/\/([^/]*).*$/i, '$1') }
        : {}),
      object: url,
      action,
      ...(v.status === 'infected' ? { signature: v.signature, location: v.location } : { reason: v.reason }),
    });
  }
}

/** The URL of the exchange, for the block page and the event (absolute-form, or Host + path). */
export function requestUrl(reqHdr: EncapsulatedRequest | null): string {
  if (!reqHdr) return 'unknown';
  const { target, headers } = reqHdr.head;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(target)) return target;
  const host = getHeader(headers, 'host');
  return host ? `http://${host}${target}` : target;
}

/** A 200 whose encapsulated HTTP response is the gateway's block page (DESIGN 4.3). */
function blockReply(common: ResponseCommon, url: string, signature: string, location: string[]): Buffer[] {
  const page = blockResponse({ url, signature, location, close: false });
  const [head, body] = serializeProxyResponse(page) as [Buffer, Buffer];
  return [
    ...adaptedHead(common, [{ name: 'res-hdr', raw: head }], 'res-body'),
    ...encodeChunk(body),
    encodeLastChunk(),
  ];
}
