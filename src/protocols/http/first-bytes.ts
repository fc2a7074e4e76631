/**
 * Deciding what a fresh byte stream carries before anyone is answered: wait for the client's first
 * bytes and classify them (TLS ClientHello, HTTP, something else), or notice that the server spoke
 * first (SMTP, FTP, SSH banners through a CONNECT tunnel), which also means "not ours to parse".
 */
import type { Duplex } from 'node:stream';
import { type ClientHello, classifyFirstBytes, parseClientHello } from '../../net/sniff.js';

export type FirstBytes =
  /** `hello` is absent when the ClientHello could not be parsed (the TLS library will judge it). */
  | { kind: 'tls'; data: Buffer; hello?: ClientHello }
  | { kind: 'http' | 'unknown'; data: Buffer }
  /** The server sent data before the client: `data` is whatever the client had sent (maybe nothing). */
  | { kind: 'server-first'; data: Buffer }
  /** The client closed or sent nothing in time. */
  | { kind: 'silent'; data: Buffer };

export interface FirstBytesOptions {
  /** Bytes already read from the client (e.g. pipelined after a CONNECT request). */
  initial?: Buffer;
  /** Watch the upstream too: data from it first means a server-speaks-first protocol. */
  upstream?: Duplex;
  timeoutMs: number;
  /** Most bytes to gather before deciding (a ClientHello can span several TCP segments). */
  max?: number;
}

/**
 * Reads (and keeps) the client's first bytes until they classify. The client is left paused with no
 * data listener, the returned bytes not yet delivered to anyone.
 */
export function readFirstBytes(client: Duplex, opts: FirstBytesOptions): Promise<FirstBytes> {
  const max = opts.max ?? 16 * 1024;
  let data = opts.initial ?? Buffer.alloc(0);
  const decide = (): FirstBytes | null => {
    if (data.length === 0) return null;
    const c = classifyFirstBytes(data);
    if (c === 'tls') {
      // Wait for the whole ClientHello: its SNI picks passthrough or the certificate to mint.
      const h = parseClientHello(data);
      if (h.state === 'ok') return { kind: 'tls', data, hello: h.hello };
      if (h.state !== 'need-more' || data.length >= max) return { kind: 'tls', data };
      return null;
    }
    if (c !== 'need-more') return { kind: c, data };
    if (data.length >= max) return { kind: 'unknown', data };
    return null;
  };
  const early = decide();
  if (early) return Promise.resolve(early);

  return new Promise((resolve) => {
    const up = opts.upstream;
    const finish = (r: FirstBytes) => {
      clearTimeout(timer);
      client.off('data', onData);
      client.off('end', onEnd);
      client.off('close', onEnd);
      client.off('error', onEnd);
      up?.off('readable', onUpstream);
      client.pause();
      resolve(r);
    };
    const onData = (d: Buffer) => {
      data = data.length ? Buffer.concat([data, d]) : d;
      client.pause();
      const r = decide();
      if (r) finish(r);
      else client.resume();
    };
    const onEnd = () => finish({ kind: 'silent', data });
    // 'readable' without reading: the server's bytes stay buffered for whoever relays them later.
    const onUpstream = () => {
      if (up && up.readableLength > 0) finish({ kind: 'server-first', data });
    };
    const timer = setTimeout(
      () => finish(data.length ? { kind: 'unknown', data } : { kind: 'silent', data }),
      opts.timeoutMs,
    );
    client.on('data', onData);
    client.once('end', onEnd);
    client.once('close', onEnd);
    client.once('error', onEnd);
    up?.on('readable', onUpstream);
    client.resume();
  });
}
