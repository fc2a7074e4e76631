/**
 * The container registry: archive formats first (cheap magic checks), then mail and documents,
 * whose detection looks at text and is costlier.
 */
import { archiveUnpackers } from './archives.js';
import { documentUnpackers } from './documents.js';
import type { Unpacker } from './types.js';

export const defaultUnpackers: readonly Unpacker[] = [...archiveUnpackers, ...documentUnpackers];

export function detectContainer(
  head: Buffer,
  size: number,
  unpackers: readonly Unpacker[] = defaultUnpackers,
) {
  for (const u of unpackers) if (u.detect(head, size)) return u;
  return null;
}
