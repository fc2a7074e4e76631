/**
 * Frame MAC keys bound to one TLS session (RFC 5705 keying-material exporter; for TLS 1.3 the
 * exporter of RFC 8446 §7.5). Both ends export 64 bytes with the same label and no context:
 * bytes 0–31 key the client→gateway direction, bytes 32–63 the gateway→client direction. A frame
 * copied from another session, or forged by anything that is not an end of this TLS session, cannot
 * carry a valid MAC.
 *
 * RFC 5705 §4: labels beginning with "EXPERIMENTAL" are for private use without IANA registration.
 */
import type { TLSSocket } from 'node:tls';
import { MacState } from './frame.js';

export const EXPORTER_LABEL = 'EXPERIMENTAL scangate tunnel v1 frame mac';
const KEY_BYTES = 32;

export interface SessionMacs {
  /** Verifies (gateway) or produces (client) frames sent by the client. */
  clientToGateway: MacState;
  /** Produces (gateway) or verifies (client) frames sent by the gateway. */
  gatewayToClient: MacState;
}

export function sessionMacs(socket: TLSSocket): SessionMacs {
  // No context value (RFC 5705 §4 distinguishes none from empty); @types/node marks it required.
  const material = socket.exportKeyingMaterial(2 * KEY_BYTES, EXPORTER_LABEL, undefined as unknown as Buffer);
  return {
    clientToGateway: new MacState(material.subarray(0, KEY_BYTES)),
    gatewayToClient: new MacState(material.subarray(KEY_BYTES, 2 * KEY_BYTES)),
  };
}
