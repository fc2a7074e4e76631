/**
 * One HTTP/1.1 client connection (plain, or decrypted inside an intercepted TLS tunnel) as a proxy:
 * read a request, judge its body, forward it, read the response, judge its body, answer; repeat
 * for keep-alive and pipelined requests, strictly in order (pipelined requests wait, parsed, in the
 * client's buffer until their turn, RFC 9112 §9.3.2).
 *
 * The session never decides where a connection goes (explicit, transparent and reverse listeners
 * do that and give it an Origin and a connector) and never touches TLS or the engine directly.
 */
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { EventAction } from '../../admin/events.js';
import type { HttpListenerConfig } from '../../config/schema.js';
import { UpstreamError } from '../../errors.js';
import type { ServiceDeps } from '../../net/service.js';
import { type BodyOutcome, ScannedBody } from './body-scanner.js';
import { framedSink } from './body-sink.js';
import {
  type Exchange,
  type Origin,
  objectName,
  originKey,
  verdictResponse,
  wantsClose,
} from './exchange.js';
import {
  getHeader,
  hasHeader,
  hasToken,
  type RawHeaders,
  setHeader,
  stripHopByHop,
  withoutHeaders,
} from './headers.js';
import { endGracefully, MessageReader, send } from './io.js';
import { type BodyFraming, HttpParser, type RequestHead, type ResponseHead } from './parser.js';
import { errorResponse, type ProxyResponse, serializeProxyResponse } from './responses.js';
import { serializeRequestHead, serializeResponseHead } from './serialize.js';
import { type ShutdownWatch, watchSignal } from './shutdown.js';
import { formatAuthority, parseRequestTarget } from './target.js';

export type { Origin } from './exchange.js';

export interface SessionEnv {
  listener: HttpListenerConfig;
  deps: ServiceDeps;
  /** Opens a connection to an origin; throws UpstreamError naming the reason. */
  connect(origin: Origin): Promise<Duplex>;
  /** Copies bytes both ways unparsed until both sides close (after a 101 Switching Protocols). */
  relay(a: Duplex, b: Duplex): Promise<void>;
  /** Aborted when the listener shuts down: idle connections close now, busy ones after their exchange. */
  shutdown?: AbortSignal;
  /** The same shutdown as one shared watch (listeners give one; default: a listener on `shutdown` per wait). */
  shutdownWatch?: ShutdownWatch;
  spoolDir?: string;
}

export interface SessionOptions {
  client: Duplex;
  /** "address:port" of the client, for events and logs. */
  clientAddress: string;
  /** Scheme of the requests on this connection: 'https' when decrypted from TLS. */
  scheme: 'http' | 'https';
  /** Where every request goes; null for the explicit proxy, which reads it from absolute-form targets. */
  origin: Origin | null;
  /** An upstream connection to `origin` opened before the client was answered (connect-first). */
  upstream?: Duplex;
  /** Explicit proxy: a CONNECT request ends the session and is handed back to the caller. */
  acceptConnect?: boolean;
  /** Bytes already read from the client (sniffed), parsed before anything else. */
  head?: Buffer;
}

export type SessionEnd =
  | { kind: 'closed' }
  | { kind: 'connect'; head: RequestHead; host: string; port: number; rest: Buffer };

interface Upstream {
  key: string;
  socket: Duplex;
  reader: MessageReader;
}

/**
 * Our Via pseudonym (RFC 9110 §7.6.3). The per-process suffix lets us recognise a request that has
 * already passed through this very proxy (an absolute URL pointing back at the listener) and stop
 * the loop with 508 instead of recursing until sockets run out.
 */
const VIA = `scangate-${randomBytes(3).toString('hex')}`;

export class HttpSession {
  private readonly reader: MessageReader;
  private upstream: Upstream | null = null;
  /** Request heads received on this connection. */
  private requests = 0;
  private readonly cfg: HttpListenerConfig;
  private readonly shutdown: ShutdownWatch;

  /** The options without the first upstream and head: kept for the session's life, they would pin both. */
  private readonly opts: Omit<SessionOptions, 'upstream' | 'head'>;

  constructor(
    private readonly env: SessionEnv,
    options: SessionOptions,
  ) {
    const { upstream, head, ...opts } = options;
    this.opts = opts;
    this.cfg = env.listener;
    this.shutdown = env.shutdownWatch ?? watchSignal(env.shutdown);
    const parser = new HttpParser('request', { maxHeaderSize: this.cfg.maxHeaderSize });
    if (head?.length) parser.push(head);
    this.reader = new MessageReader(opts.client, parser);
    if (upstream && opts.origin) this.upstream = this.wrapUpstream(originKey(opts.origin), upstream);
  }

  private get log() {
    return this.env.deps.logger;
  }

  async run(): Promise<SessionEnd> {
    try {
      for (;;) {
        const ev = await this.nextRequestHead();
        if (ev === null) break;
        if ('response' in ev) {
          await this.answer(ev.response, '1.1');
          break;
        }
        this.requests++;
        const result = await this.handle(ev.head, ev.framing);
        if (result === 'close') break;
        if (typeof result === 'object') return result;
      }
    } catch (e) {
      this.log.debug(
        { err: (e as Error).message, client: this.opts.clientAddress },
        'http session ended by error',
      );
      this.opts.client.destroy();
    } finally {
      this.dropUpstream();
    }
    if (!this.opts.client.destroyed) endGracefully(this.opts.client);
    return { kind: 'closed' };
  }

  /** Waits for the next request head within headerTimeout (slowloris guard). */
  private async nextRequestHead(): Promise<
    { head: RequestHead; framing: BodyFraming } | { response: ProxyResponse } | null
  > {
    let timer: NodeJS.Timeout | undefined;
    const before = this.reader.received;
    const shutdown = this.shutdown;
    let onShutdown: (() => void) | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.cfg.headerTimeout);
      onShutdown = () => {
        // A connection still before its first request was accepted before the shutdown (or before a
        // reload handed the listening socket over): its first request is still answered.
        if (this.requests === 0) return;
        // Only a connection with nothing of the next request yet is closed at once.
        if (this.reader.idle) resolve('timeout');
      };
      if (shutdown.aborted) onShutdown();
      shutdown.add(onShutdown);
    });
    const releaseUpstream = this.requests > 0 ? this.releaseIdleUpstream() : undefined;
    try {
      const ev = await Promise.race([this.reader.next(), timeout]);
      if (ev === 'timeout') {
        // A client that sent part of a head gets 408; an idle keep-alive connection is just closed.
        const partial = this.reader.received > before || !this.reader.idle;
        return partial ? { response: errorResponse(408, 'request header not received in time') } : null;
      }
      if (ev === null) return null;
      if (ev.type === 'error') return { response: errorResponse(ev.error.status, ev.error.message) };
      if (ev.type !== 'request-head') return { response: errorResponse(400, 'unexpected message data') };
      return { head: ev.head, framing: ev.framing };
    } finally {
      clearTimeout(timer);
      if (onShutdown) shutdown.remove(onShutdown);
      releaseUpstream?.();
    }
  }

  /**
   * While the client is idle, its upstream connection is closed once the origin ends it or after
   * upstreamIdleTimeout (the keep-alive an origin such as Apache or Node gives is about 5 s anyway):
   * an idle intercepted connection then holds one TLS session instead of two. The next request
   * reconnects (a resumed TLS session). Returns the function that stops watching.
   */
  private releaseIdleUpstream(): (() => void) | undefined {
    // Cleared once dropped: the caller's frame holds `stop` until the client's next request, and
    // through it the closed connection (TLS socket, reader, parser) would stay reachable.
    let up = this.upstream;
    if (!up) return undefined;
    const stop = () => {
      clearTimeout(timer);
      up?.socket.off('end', drop);
      up?.socket.off('close', drop);
      up = null;
    };
    const drop = () => {
      if (up && this.upstream === up) this.dropUpstream(true);
      stop();
    };
    const timer = setTimeout(drop, this.cfg.upstreamIdleTimeout);
    up.socket.once('end', drop);
    up.socket.once('close', drop);
    return stop;
  }

  private async answer(r: ProxyResponse, version: string, headOnly = false): Promise<void> {
    await send(
      this.opts.client,
      serializeProxyResponse(r, version === '1.0' ? '1.0' : '1.1', headOnly),
    ).catch(() => {});
  }

  /** One request/response exchange. */
  private async handle(head: RequestHead, framing: BodyFraming): Promise<'continue' | 'close' | SessionEnd> {
    if ((getHeader(head.headers, 'via') ?? '').includes(VIA))
      return this.refuse(head, 508, 'request loop: it already passed through this proxy');
    const target = parseRequestTarget(head.method, head.target);
    if (!target) return this.refuse(head, 400, 'invalid request-target');
    if (target.form === 'authority') {
      if (!this.opts.acceptConnect) return this.refuse(head, 405, 'CONNECT is not allowed here');
      return { kind: 'connect', head, host: target.host, port: target.port, rest: this.reader.detach() };
    }
    const host = getHeader(head.headers, 'host');
    if (head.version === '1.1' && (host === undefined || host.includes(','))) {
      return this.refuse(head, 400, 'exactly one Host header is required (RFC 9112 §3.2)');
    }
    let origin: Origin;
    let path: string;
    let authority: string;
    if (this.opts.origin) {
      origin = this.opts.origin;
      path = target.form === 'origin' ? target.path : target.form === 'absolute' ? target.path : '*';
      authority = host || formatAuthority(origin.host, origin.port, origin.tls ? 443 : 80);
    } else {
      if (target.form !== 'absolute')
        return this.refuse(head, 400, 'this is a proxy: requests need an absolute URL');
      origin = { host: target.host, port: target.port, tls: target.scheme === 'https' };
      path = target.path;
      authority = formatAuthority(target.host, target.port, origin.tls ? 443 : 80);
    }
    const scheme = this.opts.origin ? this.opts.scheme : origin.tls ? 'https' : 'http';
    const url = `${scheme}://${authority}${path}`;
    const info: Exchange = { url, origin, scheme, clientVersion: head.version, method: head.method };

    const upgrade = hasToken(head.headers, 'connection', 'upgrade') && hasHeader(head.headers, 'upgrade');
    const expectContinue = hasToken(head.headers, 'expect', '100-continue');
    let headers = stripHopByHop(head.headers, upgrade ? ['upgrade'] : []);
    if (upgrade) headers.push(['Connection', 'Upgrade']);
    // We answer 100-continue ourselves (the body is held for scanning anyway), RFC 9110 §10.1.1.
    if (expectContinue) headers = withoutHeaders(headers, ['expect']);
    // A proxy replaces Host with the absolute-form authority (RFC 9112 §3.2.2).
    if (!this.opts.origin || !host) headers = setHeader(headers, 'Host', authority);
    headers.push(['Via', `${head.version} ${VIA}`]);
    if (framing.kind === 'chunked') headers.push(['Transfer-Encoding', 'chunked']);
    const outHead: RequestHead = { method: head.method, target: path, version: '1.1', headers };

    let up: Upstream;
    try {
      up = await this.getUpstream(origin);
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      this.emit(info, { kind: 'upstream-failure', action: 'error', reason });
      return this.refuse(
        head,
        502,
        `upstream ${formatAuthority(origin.host, origin.port)} failed: ${reason}`,
      );
    }
    up.reader.parser.expectResponse(head.method);

    if (framing.kind === 'none') {
      const end = await this.reader.next();
      if (end?.type !== 'message-end') return 'close';
      await send(up.socket, serializeRequestHead(outHead));
    } else {
      if (expectContinue && head.version === '1.1')
        await send(this.opts.client, Buffer.from('HTTP/1.1 100 Continue\r\n\r\n'));
      const sent = await this.forwardRequestBody(info, outHead, framing, up);
      if (sent !== 'sent') return sent;
    }
    return this.relayResponse(info, head, up, upgrade);
  }

  /** Upload: scanned before (held) or while (streamed, keep-back) it reaches the origin. */
  private async forwardRequestBody(
    info: Exchange,
    outHead: RequestHead,
    framing: BodyFraming,
    up: Upstream,
  ): Promise<'sent' | 'close'> {
    let trailers: RawHeaders = [];
    const body = new ScannedBody(
      this.bodyOptions(info, undefined, framing.kind === 'length' ? framing.length : undefined, 'upload'),
      // The last chunk (with the client's trailers) goes out with the last body bytes.
      framedSink(up.socket, serializeRequestHead(outHead), framing.kind === 'chunked', () => trailers),
    );
    for (;;) {
      const ev = await this.reader.next();
      if (ev?.type === 'body') {
        await body.write(ev.data);
        // Infected mid-upload: the origin's connection goes now (it gets no more bytes); the rest of
        // the upload is read and dropped, so the client is not reset before it can read the 403.
        if (body.decided) this.dropUpstream(true);
        continue;
      }
      if (ev?.type === 'trailers') {
        trailers = ev.headers;
        continue;
      }
      if (ev?.type === 'message-end') break;
      // The client broke off (or sent bad framing) mid-upload: nothing complete may reach the origin.
      await body.abortScan();
      this.dropUpstream(true);
      if (ev?.type === 'error' && !body.streamed)
        await this.answer(errorResponse(ev.error.status, ev.error.message), info.clientVersion);
      return 'close';
    }
    const outcome = await body.finish(this.env.deps.config.engine.onError === 'allow');
    this.report(info, outcome);
    if (!outcome.deliver) {
      // Streamed uploads are cut mid-body: the origin sees an aborted request, never the whole object.
      this.dropUpstream(true);
      await this.answer(verdictResponse(info.url, outcome.verdict, true), info.clientVersion);
      return 'close';
    }
    return 'sent';
  }

  private async relayResponse(
    info: Exchange,
    req: RequestHead,
    up: Upstream,
    upgrade: boolean,
  ): Promise<'continue' | 'close'> {
    let ev = await up.reader.next();
    // Interim 1xx responses are dropped: we already answered any 100-continue ourselves.
    while (ev?.type === 'response-head' && ev.head.status < 200 && ev.head.status !== 101) {
      const end = await up.reader.next();
      if (end?.type !== 'message-end') break;
      ev = await up.reader.next();
    }
    if (ev?.type !== 'response-head') {
      const reason = ev?.type === 'error' ? ev.error.message : 'connection closed before a response';
      this.dropUpstream(true);
      this.emit(info, { kind: 'upstream-failure', action: 'error', reason });
      await this.answer(errorResponse(502, `upstream sent no valid response: ${reason}`), info.clientVersion);
      return 'close';
    }
    const resp = ev.head;
    if (resp.status === 101) {
      if (!upgrade) {
        this.dropUpstream(true);
        await this.answer(
          errorResponse(502, 'upstream switched protocols without being asked'),
          info.clientVersion,
        );
        return 'close';
      }
      await this.switchProtocols(resp, up);
      return 'close';
    }
    const clientClose = wantsClose(req) || this.env.shutdown?.aborted === true;
    const upstreamClose = ev.framing.kind === 'close' || wantsClose(resp);
    const unsized = ev.framing.kind === 'chunked' || ev.framing.kind === 'close';
    const toClientChunked = unsized && info.clientVersion === '1.1';
    const closeAfter = clientClose || (unsized && !toClientChunked);
    let headers = stripHopByHop(resp.headers);
    headers.push(['Via', `${resp.version} ${VIA}`]);
    // A Content-Length next to chunked framing is wrong by definition (RFC 9112 §6.3 item 3): drop it.
    if (unsized) headers = withoutHeaders(headers, ['content-length']);
    if (toClientChunked) headers = setHeader(headers, 'Transfer-Encoding', 'chunked');
    if (closeAfter) headers.push(['Connection', 'close']);
    const outHead = serializeResponseHead({
      version: info.clientVersion === '1.0' ? '1.0' : '1.1',
      status: resp.status,
      reason: resp.reason,
      headers,
    });

    if (ev.framing.kind === 'none') {
      const end = await up.reader.next();
      if (end?.type !== 'message-end') this.dropUpstream(true);
      await send(this.opts.client, outHead);
      if (upstreamClose) this.dropUpstream(true);
      return closeAfter ? 'close' : 'continue';
    }

    const size = ev.framing.kind === 'length' ? ev.framing.length : undefined;
    let trailers: RawHeaders = [];
    const body = new ScannedBody(
      this.bodyOptions(info, getHeader(resp.headers, 'content-encoding'), size, 'download'),
      framedSink(this.opts.client, outHead, toClientChunked, () => trailers),
    );
    for (;;) {
      const b = await up.reader.next();
      if (b?.type === 'body') {
        await body.write(b.data);
        // Infected mid-download: cut now rather than relay the rest of a large object first.
        if (body.decided) break;
        continue;
      }
      if (b?.type === 'trailers') {
        trailers = b.headers;
        continue;
      }
      if (b?.type === 'message-end') break;
      const reason = b?.type === 'error' ? b.error.message : 'connection closed inside the response body';
      await body.abortScan();
      this.dropUpstream(true);
      this.emit(info, { kind: 'upstream-failure', action: 'error', reason });
      if (body.streamed) this.opts.client.destroy();
      else await this.answer(errorResponse(502, `upstream response broken: ${reason}`), info.clientVersion);
      return 'close';
    }
    // A body left unread (decided early) leaves the upstream connection mid-response.
    if (upstreamClose || body.decided) this.dropUpstream(true);
    const outcome = await body.finish(this.env.deps.config.engine.onError === 'allow');
    this.report(info, outcome);
    if (!outcome.deliver) {
      if (outcome.streamed) {
        // Part of the object already left: cut the transfer; no last chunk, no complete length.
        this.opts.client.destroy();
        return 'close';
      }
      await this.answer(
        verdictResponse(info.url, outcome.verdict, closeAfter),
        info.clientVersion,
        req.method === 'HEAD',
      );
      return closeAfter ? 'close' : 'continue';
    }
    return closeAfter ? 'close' : 'continue';
  }

  /** 101: forward the switch and splice both directions unscanned (WebSocket and friends). */
  private async switchProtocols(resp: ResponseHead, up: Upstream): Promise<void> {
    const headers = stripHopByHop(resp.headers, ['upgrade']);
    headers.push(['Connection', 'Upgrade'], ['Via', `${resp.version} ${VIA}`]);
    const upRest = up.reader.detach();
    const clientRest = this.reader.detach();
    this.upstream = null;
    await send(this.opts.client, [
      serializeResponseHead({ version: '1.1', status: 101, reason: resp.reason, headers }),
      upRest,
    ]);
    if (clientRest.length) await send(up.socket, clientRest);
    await this.env.relay(this.opts.client, up.socket);
  }

  private refuse(head: RequestHead, status: number, message: string): 'close' {
    void this.answer(errorResponse(status, message), head.version);
    return 'close';
  }

  private bodyOptions(
    info: Exchange,
    contentEncoding: string | undefined,
    size: number | undefined,
    fallback: string,
  ) {
    return {
      scanner: this.env.deps.scanner,
      holdLimit: this.cfg.holdLimit,
      keepBack: this.cfg.keepBack,
      contentEncoding,
      size,
      name: objectName(info.url, fallback),
      spoolDir: this.env.spoolDir,
      spoolMemory: this.cfg.spoolMemory,
    };
  }

  private report(info: Exchange, outcome: BodyOutcome): void {
    const v = outcome.verdict;
    if (v.status === 'clean') return;
    if (v.status === 'infected') {
      const action: EventAction = outcome.streamed ? 'partiallyblocked' : 'blocked';
      this.emit(info, { kind: 'verdict', action, signature: v.signature, location: v.location });
      return;
    }
    const action: EventAction = outcome.deliver
      ? 'allowed'
      : outcome.streamed
        ? 'partiallyblocked'
        : 'blocked';
    this.emit(info, { kind: 'verdict', action, reason: v.reason });
  }

  private emit(
    info: Exchange,
    e: { kind: string; action: EventAction; signature?: string; location?: string[]; reason?: string },
  ): void {
    this.env.deps.events.emit({
      listener: this.cfg.name,
      protocol: info.scheme,
      client: this.opts.clientAddress,
      server: formatAuthority(info.origin.host, info.origin.port),
      object: info.url,
      ...e,
    });
  }

  private async getUpstream(origin: Origin): Promise<Upstream> {
    const key = originKey(origin);
    const cur = this.upstream;
    if (cur && cur.key === key && !cur.socket.destroyed && !cur.reader.eof && cur.reader.idle) return cur;
    this.dropUpstream(true);
    const socket = await this.env.connect(origin);
    this.upstream = this.wrapUpstream(key, socket);
    return this.upstream;
  }

  private wrapUpstream(key: string, socket: Duplex): Upstream {
    const reader = new MessageReader(
      socket,
      new HttpParser('response', { maxHeaderSize: Math.max(this.cfg.maxHeaderSize, 64 * 1024) }),
    );
    const s = socket as Duplex & { setTimeout?: (ms: number, cb: () => void) => void };
    s.setTimeout?.(this.cfg.idleTimeout, () =>
      socket.destroy(new UpstreamError('ERR_UPSTREAM_TIMEOUT', 'upstream idle timeout')),
    );
    return { key, socket, reader };
  }

  private dropUpstream(destroy = true): void {
    const up = this.upstream;
    this.upstream = null;
    if (up && destroy) up.socket.destroy();
  }
}
