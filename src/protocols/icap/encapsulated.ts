/**
 * The Encapsulated header (RFC 3507 §4.4.1): which HTTP heads and which body an ICAP message
 * carries, and where each starts, as byte offsets from the end of the ICAP head. The grammar per
 * method is fixed: heads first in req-hdr, res-hdr order, then exactly one body entity (a real body
 * or null-body), offsets starting at 0 and strictly increasing between heads.
 */
import type { BodyEntity, EncapsulatedEntity, EntityName, IcapMethod } from './messages.js';

/** The body entities each method may carry, and its allowed heads, in order. */
const GRAMMAR: Record<IcapMethod, { heads: EntityName[]; bodies: EntityName[] }> = {
  REQMOD: { heads: ['req-hdr'], bodies: ['req-body', 'null-body'] },
  RESPMOD: { heads: ['req-hdr', 'res-hdr'], bodies: ['res-body', 'null-body'] },
  OPTIONS: { heads: [], bodies: ['opt-body', 'null-body'] },
};

const ENTITY = /^(req-hdr|res-hdr|req-body|res-body|null-body|opt-body)=(\d{1,9})$/;

export type EncapsulatedResult =
  | {
      entities: EncapsulatedEntity[];
      /** Heads in order with their byte ranges relative to the end of the ICAP head. */
      heads: Array<{ name: 'req-hdr' | 'res-hdr'; start: number; end: number }>;
      body: BodyEntity | null;
      /** Bytes of encapsulated heads before the body (the body entity's offset). */
      headBytes: number;
    }
  | { error: string };

/** Parses and checks an Encapsulated value for `method`; `error` names what is wrong. */
export function parseEncapsulated(value: string, method: IcapMethod): EncapsulatedResult {
  const entities: EncapsulatedEntity[] = [];
  for (const part of value.split(',')) {
    const m = ENTITY.exec(part.trim());
    if (!m) return { error: `malformed Encapsulated entry "${part.trim().slice(0, 40)}"` };
    entities.push({ name: m[1] as EntityName, offset: Number(m[2]) });
  }
  const grammar = GRAMMAR[method];
  const last = entities[entities.length - 1]!;
  if (!grammar.bodies.includes(last.name))
    return { error: `${method} must end its Encapsulated list with ${grammar.bodies.join(' or ')}` };
  const headEntities = entities.slice(0, -1);
  let allowedFrom = 0;
  for (const e of headEntities) {
    const at = grammar.heads.indexOf(e.name);
    if (at < allowedFrom) return { error: `${e.name} is not allowed here in a ${method} Encapsulated list` };
    allowedFrom = at + 1;
  }
  if (entities[0]!.offset !== 0) return { error: 'the first Encapsulated entity must be at offset 0' };
  const heads: Array<{ name: 'req-hdr' | 'res-hdr'; start: number; end: number }> = [];
  for (let i = 0; i < headEntities.length; i++) {
    const e = headEntities[i]!;
    const end = entities[i + 1]!.offset;
    // Each head ends with an empty line, so it is at least 4 bytes long (§4.4.1: offsets are exact).
    if (end < e.offset + 4) return { error: 'Encapsulated offsets must increase by a whole HTTP head' };
    heads.push({ name: e.name as 'req-hdr' | 'res-hdr', start: e.offset, end });
  }
  return {
    entities,
    heads,
    body: last.name === 'null-body' ? null : (last.name as BodyEntity),
    headBytes: last.offset,
  };
}

/** Writes an Encapsulated value for heads of the given lengths followed by `body`. */
export function formatEncapsulated(
  heads: Array<{ name: 'req-hdr' | 'res-hdr'; length: number }>,
  body: BodyEntity | 'null-body',
): string {
  const parts: string[] = [];
  let offset = 0;
  for (const h of heads) {
    parts.push(`${h.name}=${offset}`);
    offset += h.length;
  }
  parts.push(`${body}=${offset}`);
  return parts.join(', ');
}
