/** `.ign2` (AllowLists.md): one signature name per line, optionally `Name:md5-of-db-entry`. */
import { HexSigError } from './hexsig.js';

export function parseIgnLine(line: string): string {
  const f = line.split(':');
  // The legacy .ign form is `dbfile:line:Name`; .ign2 is `Name` or `Name:md5`.
  if (f.length === 1) return f[0]!;
  if (f.length === 2 && /^[0-9a-fA-F]{32}$/.test(f[1]!)) return f[0]!;
  if (f.length === 3) return f[2]!;
  throw new HexSigError('expected Name or Name:md5');
}
