/** Parsers for the human units used in configuration: sizes (`100MB`) and durations (`120s`). */

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

/** Bytes from `123`, `64KB`, `100MB`, `1.5GiB` (binary multiples, as ClamAV reads `100M`). */
export function parseSize(value: string | number): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw new RangeError(`not a size: ${value}`);
    return Math.floor(value);
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
  const mult = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || mult === undefined) throw new RangeError(`not a size: "${value}" (use e.g. 512KB, 100MB, 1GB)`);
  return Math.floor(Number(m[1]) * mult);
}

const TIME_UNITS: Record<string, number> = {
  ms: 1,
  '': 1000,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/** Milliseconds from `500ms`, `30s`, `5m`, `1h`; a bare number means seconds. */
export function parseDuration(value: string | number): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw new RangeError(`not a duration: ${value}`);
    return Math.floor(value * 1000);
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(value);
  if (!m) throw new RangeError(`not a duration: "${value}" (use e.g. 500ms, 30s, 5m)`);
  return Math.floor(Number(m[1]) * TIME_UNITS[m[2] ?? '']!);
}

/** Splits `host:port`, `[v6]:port` or `/unix/path`. */
export function parseAddress(value: string): { host: string; port: number } | { path: string } {
  if (value.startsWith('/') || value.startsWith('./')) return { path: value };
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value);
  if (!m) throw new RangeError(`not an address: "${value}" (use host:port, [::1]:port or /path/to.sock)`);
  const port = Number(m[3]);
  if (port > 65535) throw new RangeError(`port out of range in "${value}"`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}
