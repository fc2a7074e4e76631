/**
 * Header lists as they travel: raw [name, value] pairs with order and case preserved (a proxy must
 * not reorder fields, RFC 9110 §5.3), plus the few lookups and edits a proxy needs.
 */

export type RawHeaders = Array<[name: string, value: string]>;

/** Every value of `name` (case-insensitive), in order. */
export function getAll(headers: RawHeaders, name: string): string[] {
  const lower = name.toLowerCase();
  const out: string[] = [];
  for (const [n, v] of headers) if (n.toLowerCase() === lower) out.push(v);
  return out;
}

/** The values of `name` joined with ", " (RFC 9110 §5.3), or undefined when absent. */
export function getHeader(headers: RawHeaders, name: string): string | undefined {
  const all = getAll(headers, name);
  return all.length ? all.join(', ') : undefined;
}

export function hasHeader(headers: RawHeaders, name: string): boolean {
  const lower = name.toLowerCase();
  return headers.some(([n]) => n.toLowerCase() === lower);
}

/** The comma-separated list elements of every `name` field, trimmed and lower-cased, empties dropped. */
export function listTokens(headers: RawHeaders, name: string): string[] {
  const out: string[] = [];
  for (const v of getAll(headers, name)) {
    for (const part of v.split(',')) {
      const t = part.trim().toLowerCase();
      if (t) out.push(t);
    }
  }
  return out;
}

export function hasToken(headers: RawHeaders, name: string, token: string): boolean {
  return listTokens(headers, name).includes(token.toLowerCase());
}

/** A copy without the named fields (case-insensitive). */
export function withoutHeaders(headers: RawHeaders, names: Iterable<string>): RawHeaders {
  const drop = new Set([...names].map((n) => n.toLowerCase()));
  return headers.filter(([n]) => !drop.has(n.toLowerCase()));
}

/** A copy with every `name` field replaced by one `name: value` at the first one's place (or appended). */
export function setHeader(headers: RawHeaders, name: string, value: string): RawHeaders {
  const lower = name.toLowerCase();
  const out: RawHeaders = [];
  let placed = false;
  for (const h of headers) {
    if (h[0].toLowerCase() !== lower) out.push(h);
    else if (!placed) {
      out.push([h[0], value]);
      placed = true;
    }
  }
  if (!placed) out.push([name, value]);
  return out;
}

/** Hop-by-hop fields (RFC 9110 §7.6.1) that a proxy never forwards, plus those named in Connection. */
const HOP_BY_HOP = [
  'connection',
  'proxy-connection',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'proxy-authenticate',
  'proxy-authorization',
];

/**
 * Removes hop-by-hop fields. `keep` names fields the caller re-adds with its own framing decision
 * (e.g. 'upgrade' for a WebSocket handshake that is forwarded as such).
 */
export function stripHopByHop(headers: RawHeaders, keep: string[] = []): RawHeaders {
  const keepSet = new Set(keep.map((k) => k.toLowerCase()));
  const named = listTokens(headers, 'connection').filter((t) => !keepSet.has(t));
  const drop = [...HOP_BY_HOP.filter((h) => !keepSet.has(h)), ...named];
  return withoutHeaders(headers, drop);
}
