/** What the registry commands share: where the registry is, the API token, reading a mail file. */
import { readFile } from 'node:fs/promises';
import { loadConfigFile } from '../config/load.js';
import { ScangateError } from '../errors.js';

export const DEFAULT_REGISTRY_URL = 'http://127.0.0.1:8025';
/** A mail given to a registry command is read whole (it is signed and stamped); this bounds it. */
export const MAX_MAIL_FILE = 64 * 1024 ** 2;

export interface RegistryLocationOptions {
  registry?: string;
  config?: string;
}

/** --registry URL, else $SCANGATE_REGISTRY, else the config's registry publicUrl/listen, else the default. */
export async function registryUrl(opts: RegistryLocationOptions): Promise<string> {
  if (opts.registry) return opts.registry;
  if (process.env.SCANGATE_REGISTRY) return process.env.SCANGATE_REGISTRY;
  if (opts.config) {
    const c = await loadConfigFile(opts.config);
    if (c.registry?.publicUrl) return c.registry.publicUrl;
    if (c.registry) return `http://${c.registry.listen}`;
  }
  return DEFAULT_REGISTRY_URL;
}

/** The API token from --token-file or $SCANGATE_REGISTRY_TOKEN (never from argv: `ps` shows argv). */
export async function registryToken(opts: { tokenFile?: string }): Promise<string> {
  if (opts.tokenFile) return (await readFile(opts.tokenFile, 'utf8')).trim();
  const t = process.env.SCANGATE_REGISTRY_TOKEN;
  if (t) return t.trim();
  throw new ScangateError(
    'ERR_REGISTRY_TOKEN',
    'no API token: use --token-file FILE or set SCANGATE_REGISTRY_TOKEN',
  );
}

export async function readMailFile(path: string): Promise<Buffer> {
  const data = path === '-' ? await readStdin() : await readFile(path);
  if (data.length > MAX_MAIL_FILE)
    throw new ScangateError('ERR_MAIL_TOO_LARGE', `${path}: larger than ${MAX_MAIL_FILE} bytes`);
  return data;
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of process.stdin as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_MAIL_FILE)
      throw new ScangateError('ERR_MAIL_TOO_LARGE', `stdin: larger than ${MAX_MAIL_FILE} bytes`);
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}
