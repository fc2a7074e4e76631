/**
 * Built-in signatures: EICAR as `Eicar-Signature` (the name clamd's documentation uses), both as an
 * MD5 hash of the exact 68-byte file and as a body signature over the string, so EICAR followed by a
 * newline or padding (as editors and mail add) is found too.
 */
import { parseHashLine } from './hash.js';
import { parseNdbLine } from './ndb.js';
import type { BodySig, HashSig } from './types.js';

export const EICAR_NAME = 'Eicar-Signature';
const EICAR = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*';

export function builtinSignatures(): { hashes: HashSig[]; bodies: BodySig[] } {
  return {
    hashes: [parseHashLine(`44d88612fea8a8f36de82e1278abb02f:68:${EICAR_NAME}`, true)],
    bodies: [parseNdbLine(`${EICAR_NAME}:0:*:${Buffer.from(EICAR, 'latin1').toString('hex')}`)],
  };
}
