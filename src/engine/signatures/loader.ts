/** The I/O shell around SignatureDbBuilder: files or folders → SignatureDb. */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { SignatureError } from '../../errors.js';
import { extensionOf, KNOWN_EXTENSIONS, SignatureDbBuilder, UNSUPPORTED_EXTENSIONS } from './builder.js';
import { builtinSignatures } from './builtin.js';
import type { SignatureDb } from './types.js';

export interface LoadOptions {
  /** Include the built-in EICAR signatures (default true). */
  builtin?: boolean;
}

const FOLDER_EXTENSIONS = new Set<string>([...KNOWN_EXTENSIONS, ...Object.keys(UNSUPPORTED_EXTENSIONS)]);

/** Loads databases from files and folders (a folder: every known extension inside, sorted by name). */
export async function loadSignatures(paths: string[], opts: LoadOptions = {}): Promise<SignatureDb> {
  const b = new SignatureDbBuilder();
  if (opts.builtin !== false) b.addParsed(builtinSignatures());
  for (const p of paths) {
    let st: Awaited<ReturnType<typeof stat>>;
    try {
      st = await stat(p);
    } catch (e) {
      throw new SignatureError(p, 0, `cannot read: ${(e as Error).message}`, { cause: e });
    }
    const files = st.isDirectory()
      ? (await readdir(p))
          .filter((n) => FOLDER_EXTENSIONS.has(extensionOf(n)))
          .sort()
          .map((n) => join(p, n))
      : [p];
    for (const f of files) {
      let data: Buffer;
      try {
        data = await readFile(f);
      } catch (e) {
        throw new SignatureError(f, 0, `cannot read: ${(e as Error).message}`, { cause: e });
      }
      b.addFile(f, data);
    }
  }
  return b.build();
}
