/**
 * Transparent proxy: connections redirected to us by the kernel (iptables REDIRECT); the original
 * destination comes from SO_ORIGINAL_DST. The client believes it talks to the origin, so a down
 * origin must look like one: we connect there first and, if that fails, reset the client
 * connection (RST) before it ever sees a byte or a TLS handshake (DESIGN 1, capability 2).
 *
 * Without a redirect (a client pointed straight at the listener) the destination falls back to
 * the Host header (plain HTTP) or the SNI name on port 443 (TLS).
 */
import type { Socket } from 'node:net';
import { getOriginalDestination } from '../../net/original-dst.js';
import { resetConnection } from '../../net/splice.js';
import { describeError, emitConnectionEvent, type ListenerContext, peerAddress } from './context.js';
import { runTunnel } from './explicit.js';
import { readFirstBytes } from './first-bytes.js';
import { getHeader } from './headers.js';
import { HttpParser } from './parser.js';
import { formatAuthority, parseAuthority } from './target.js';

export async function handleTransparent(ctx: ListenerContext, client: Socket): Promise<void> {
  const clientAddress = peerAddress(client);
  let dst = getOriginalDestination(client);
  // Not redirected: the "original destination" is this listener itself.
  if (dst && dst.address === client.localAddress && dst.port === client.localPort) dst = null;

  let initial: Buffer = Buffer.alloc(0);
  if (!dst) {
    const first = await readFirstBytes(client, { timeoutMs: ctx.sniffTimeoutMs });
    initial = first.data;
    const fallback =
      first.kind === 'tls'
        ? sniTarget(first.hello?.sni)
        : first.kind === 'http'
          ? await hostTarget(ctx, client, first.data)
          : null;
    if (!fallback) {
      ctx.deps.logger.info(
        { listener: ctx.cfg.name, client: clientAddress, kind: first.kind },
        'transparent: no original destination and no Host/SNI',
      );
      resetConnection(client);
      return;
    }
    dst = { address: fallback.host, port: fallback.port };
    initial = fallback.data ?? initial;
  }

  const server = formatAuthority(dst.address, dst.port);
  let upstream: Socket;
  try {
    upstream = await ctx.connector.connect(dst.address, dst.port, { timeoutMs: ctx.connectTimeoutMs });
  } catch (e) {
    emitConnectionEvent(ctx, {
      kind: 'upstream-failure',
      action: 'error',
      client: clientAddress,
      server,
      reason: describeError(e),
    });
    resetConnection(client);
    return;
  }
  upstream.on('error', () => {});
  // Handed over, not awaited: this frame would keep the upstream socket for the connection's life.
  return runTunnel(ctx, {
    client,
    clientAddress,
    host: dst.address,
    port: dst.port,
    upstream,
    initial,
    onUpstreamDown: 'reset',
  });
}

function sniTarget(name: string | undefined): { host: string; port: number; data?: Buffer } | null {
  return name ? { host: name, port: 443 } : null;
}

/** Reads the first request head (bounded by maxHeaderSize) for its Host header. */
async function hostTarget(
  ctx: ListenerContext,
  client: Socket,
  initial: Buffer,
): Promise<{ host: string; port: number; data: Buffer } | null> {
  const parser = new HttpParser('request', { maxHeaderSize: ctx.cfg.maxHeaderSize });
  const chunks = [initial];
  let ev = parser.feed(initial)[0];
  const deadline = Date.now() + ctx.cfg.headerTimeout;
  while (!ev) {
    const more = await readSome(client, deadline - Date.now());
    if (!more) return null;
    chunks.push(more);
    ev = parser.feed(more)[0];
  }
  if (ev.type !== 'request-head') return null;
  const host = getHeader(ev.head.headers, 'host');
  const a = host ? parseAuthority(host, 80) : null;
  return a ? { ...a, data: Buffer.concat(chunks) } : null;
}

function readSome(socket: Socket, timeoutMs: number): Promise<Buffer | null> {
  if (timeoutMs <= 0) return Promise.resolve(null);
  return new Promise((resolve) => {
    const done = (b: Buffer | null) => {
      clearTimeout(t);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.pause();
      resolve(b);
    };
    const onData = (d: Buffer) => done(d);
    const onClose = () => done(null);
    const t = setTimeout(() => done(null), timeoutMs);
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.resume();
  });
}
