/**
 * Explicit (forward) proxy: clients send absolute-form requests and CONNECT. A CONNECT is answered
 * only after the origin accepted our TCP connection (DESIGN 1, capability 2): a refused or
 * unreachable origin becomes a 502 naming the reason, at once. Inside an established tunnel the
 * first client bytes decide: TLS is intercepted (or passed through for pinned hosts), plain HTTP
 * runs the scanning session, anything else is spliced unscanned (or blocked) as configured.
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { UpstreamError } from '../../errors.js';
import type { ClientHello } from '../../net/sniff.js';
import { resetConnection } from '../../net/splice.js';
import { type Intercepted, interceptTls } from '../../tls/intercept.js';
import { describeError, emitConnectionEvent, type ListenerContext, peerAddress } from './context.js';
import { readFirstBytes } from './first-bytes.js';
import { endGracefully, send } from './io.js';
import { errorResponse, serializeProxyResponse } from './responses.js';
import { HttpSession, type Origin, type SessionEnd } from './session.js';
import { formatAuthority } from './target.js';
import { serveTlsFailure } from './tls-failure.js';
import { relayTunnel } from './tunnel.js';

/*
 * Each step below hands over to the next with `return next(...)`, not `await next(...)`: a frame
 * suspended at an await keeps its locals (the CONNECT session and its parser, the upstream
 * sockets, the interception pair) for as long as the connection lives, several KiB per idle
 * intercepted connection after its upstream leg was closed.
 */
export async function handleExplicit(ctx: ListenerContext, client: Socket): Promise<void> {
  const clientAddress = peerAddress(client);
  const end = await new HttpSession(ctx.env, {
    client,
    clientAddress,
    scheme: 'http',
    origin: null,
    acceptConnect: true,
  }).run();
  if (end.kind !== 'connect') return;
  return handleConnect(ctx, client, clientAddress, end.host, end.port, end.head.version, end.rest);
}

async function handleConnect(
  ctx: ListenerContext,
  client: Socket,
  clientAddress: string,
  host: string,
  port: number,
  version: string,
  rest: Buffer,
): Promise<void> {
  const server = formatAuthority(host, port);
  let upstream: Socket;
  try {
    upstream = await ctx.connector.connect(host, port, { timeoutMs: ctx.connectTimeoutMs });
  } catch (e) {
    const reason = describeError(e);
    emitConnectionEvent(ctx, {
      kind: 'upstream-failure',
      action: 'error',
      client: clientAddress,
      server,
      reason,
    });
    await send(
      client,
      serializeProxyResponse(errorResponse(502, `cannot connect to ${server}: ${reason}`), version),
    ).catch(() => {});
    endGracefully(client);
    return;
  }
  upstream.on('error', () => {});
  try {
    await send(
      client,
      Buffer.from(`HTTP/${version === '1.0' ? '1.0' : '1.1'} 200 Connection established\r\n\r\n`),
    );
  } catch {
    upstream.destroy();
    return;
  }
  return runTunnel(ctx, {
    client,
    clientAddress,
    host,
    port,
    upstream,
    initial: rest,
    onUpstreamDown: 'error-page',
  });
}

export interface TunnelParams {
  client: Socket;
  clientAddress: string;
  /** The destination as the client named it (CONNECT authority, SNI, or original destination). */
  host: string;
  port: number;
  /** TCP connection to the destination, already established (connect-first). */
  upstream: Socket;
  initial: Buffer;
  /** What the client gets when TLS to the origin fails: a 502 page inside TLS, or a reset. */
  onUpstreamDown: 'error-page' | 'reset';
}

/** Sniffs the first bytes of an established tunnel and runs the matching handler. */
export async function runTunnel(ctx: ListenerContext, p: TunnelParams): Promise<void> {
  const server = formatAuthority(p.host, p.port);
  const first = await readFirstBytes(p.client, {
    initial: p.initial,
    upstream: p.upstream,
    timeoutMs: ctx.sniffTimeoutMs,
  });
  if (first.kind === 'silent' && p.client.destroyed) {
    p.upstream.destroy();
    return;
  }
  if (first.kind === 'http') {
    const session = new HttpSession(ctx.env, {
      client: p.client,
      clientAddress: p.clientAddress,
      scheme: 'http',
      origin: { host: p.host, port: p.port, tls: false },
      upstream: p.upstream,
      head: first.data,
    });
    return session.run().then(() => {});
  }
  if (first.kind === 'tls') {
    const hello = first.hello;
    const name = hello?.sni || p.host;
    if (
      ctx.deps.tls.passthrough.shouldPassthrough(name) ||
      (name !== p.host && ctx.deps.tls.passthrough.shouldPassthrough(p.host))
    ) {
      emitConnectionEvent(ctx, {
        kind: 'passthrough',
        action: 'passthrough',
        client: p.clientAddress,
        server,
        protocol: 'https',
        object: name,
      });
      await spliceWith(ctx, p.client, p.upstream, first.data);
      return;
    }
    return interceptAndServe(ctx, p, first.data, hello, name);
  }
  // Not HTTP, not TLS (or the server speaks first): never parsed, never scanned (DESIGN 1, capability 2).
  const classification = first.kind;
  const firstBytes = first.data.subarray(0, 16).toString('hex');
  if (ctx.cfg.unknownProtocol === 'block') {
    emitConnectionEvent(ctx, {
      kind: 'splice',
      action: 'blocked',
      client: p.clientAddress,
      server,
      reason: `${classification} protocol (first bytes ${firstBytes})`,
    });
    p.upstream.destroy();
    p.client.destroy();
    return;
  }
  ctx.deps.logger.info(
    { listener: ctx.cfg.name, client: p.clientAddress, server, classification, firstBytes },
    'unknown protocol spliced unscanned',
  );
  emitConnectionEvent(ctx, {
    kind: 'splice',
    action: 'allowed',
    client: p.clientAddress,
    server,
    reason: `${classification} protocol (first bytes ${firstBytes})`,
  });
  await spliceWith(ctx, p.client, p.upstream, first.data);
}

async function spliceWith(
  ctx: ListenerContext,
  client: Duplex,
  upstream: Duplex,
  head: Buffer,
): Promise<void> {
  if (head.length) await send(upstream, head).catch(() => {});
  await relayTunnel(client, upstream, ctx.cfg.idleTimeout);
}

async function interceptAndServe(
  ctx: ListenerContext,
  p: TunnelParams,
  head: Buffer,
  hello: ClientHello | undefined,
  name: string,
): Promise<void> {
  const server = formatAuthority(p.host, p.port);
  let pair: Intercepted;
  try {
    pair = await interceptTls({
      client: p.client,
      head,
      hello,
      target: { host: p.host, port: p.port },
      // TLS goes over the TCP connection that proved the origin up.
      upstreamSocket: p.upstream,
      runtime: ctx.deps.tls,
      alpn: ['http/1.1'],
      logger: ctx.deps.logger,
      events: ctx.deps.events,
      listener: ctx.cfg.name,
      protocol: 'https',
    });
  } catch (e) {
    p.upstream.destroy();
    // A client-side failure (bad ClientHello, our certificate refused) was already logged and the
    // client closed by interceptTls; only an upstream failure is ours to mirror.
    if (!(e instanceof UpstreamError)) return;
    const reason = describeError(e);
    emitConnectionEvent(ctx, {
      kind: 'upstream-failure',
      action: 'error',
      client: p.clientAddress,
      server,
      protocol: 'https',
      reason,
      object: name,
    });
    // interceptTls put the ClientHello back into the client stream, untouched.
    if (p.onUpstreamDown === 'reset') resetConnection(p.client);
    else await serveTlsFailure(ctx, p.client, name, reason);
    return;
  }
  return serveIntercepted(
    ctx,
    p.clientAddress,
    { host: p.host, port: p.port, tls: true, servername: name },
    pair,
  ).then(() => {});
}

/**
 * The decrypted session, started from a function of its own: the waiting frames above hold no
 * reference to the interception's sockets, so an upstream connection the session closes while the
 * client idles can be freed.
 */
function serveIntercepted(
  ctx: ListenerContext,
  clientAddress: string,
  origin: Origin,
  pair: Intercepted,
): Promise<SessionEnd> {
  return new HttpSession(ctx.env, {
    client: pair.client,
    clientAddress,
    scheme: 'https',
    origin,
    upstream: pair.upstream,
  }).run();
}
