/**
 * Byte-exact relays the HTTP proxy hands connections to: after a 101 (WebSocket), for a passthrough
 * host, or for a CONNECT tunnel that does not carry HTTP or TLS. Nothing is parsed or scanned.
 */
import type { Duplex } from 'node:stream';
import { type SpliceResult, splice } from '../../net/splice.js';

/** Copies both ways until both sides are done (half-close aware); resolves when both are closed. */
export function relayTunnel(a: Duplex, b: Duplex, idleTimeoutMs: number): Promise<SpliceResult> {
  return splice(a, b, { idleTimeoutMs });
}
