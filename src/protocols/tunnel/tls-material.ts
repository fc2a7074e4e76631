/**
 * The gateway's TLS material (certificate, key, client CA, CRL), reloaded without dropping
 * connections: on SIGHUP (via the service's reload()) and when one of the files changes.
 * tls.Server#setSecureContext swaps the context for new handshakes only; existing TLS sessions keep
 * theirs. Session-ticket keys are derived from the material itself (tls/ticket-keys.ts): new
 * material, new keys, so a client cannot resume a session that was authenticated under the old CA or
 * CRL (a revoked client must do a full handshake and fail), while every worker of a cluster holds
 * the same keys and a client resumes on whichever worker its connection reaches.
 * A reload that fails (a half-written file, a key that does not match) keeps the running material.
 */
import { createHash } from 'node:crypto';
import { type FSWatcher, watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { createSecureContext, type SecureContextOptions, type Server } from 'node:tls';
import { ConfigError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { ticketKeys } from '../../tls/ticket-keys.js';

export interface TunnelTlsFiles {
  cert: string;
  key: string;
  clientCa: string;
  crl: string | null;
}

export async function readTlsMaterial(files: TunnelTlsFiles, keyPath = 'tls'): Promise<SecureContextOptions> {
  const read = async (name: keyof TunnelTlsFiles, path: string) => {
    try {
      return await readFile(path);
    } catch (e) {
      throw new ConfigError(`${keyPath}.${name}`, `cannot read ${path}: ${(e as Error).message}`, {
        cause: e,
      });
    }
  };
  const [cert, key, ca, crl] = await Promise.all([
    read('cert', files.cert),
    read('key', files.key),
    read('clientCa', files.clientCa),
    files.crl ? read('crl', files.crl) : Promise.resolve(undefined),
  ]);
  const material = createHash('sha256');
  for (const part of [cert, key, ca, crl ?? '']) material.update(part).update('\0');
  const options: SecureContextOptions = {
    cert,
    key,
    ca,
    ...(crl ? { crl } : {}),
    ticketKeys: ticketKeys('tunnel', keyPath, material.digest()),
  };
  try {
    // Throws on a key that does not match the certificate, or an unparsable PEM/CRL.
    createSecureContext(options);
  } catch (e) {
    throw new ConfigError(keyPath, `unusable TLS material: ${(e as Error).message}`, { cause: e });
  }
  return options;
}

export class TlsMaterialReloader {
  private watchers: FSWatcher[] = [];
  private debounce: NodeJS.Timeout | null = null;
  private running: Promise<void> = Promise.resolve();
  /** Completed reloads; tests wait on it. */
  generation = 0;

  constructor(
    private readonly files: TunnelTlsFiles,
    private readonly server: Server,
    private readonly log: Logger,
    private readonly keyPath: string,
  ) {}

  /** Re-reads every file and installs the new context; rejects (keeping the old one) when unusable. */
  reload(): Promise<void> {
    this.running = this.running
      .catch(() => {})
      .then(async () => {
        const options = await readTlsMaterial(this.files, this.keyPath);
        this.server.setSecureContext(options);
        this.server.setTicketKeys(options.ticketKeys as Buffer);
        this.generation++;
        this.log.info({ generation: this.generation }, 'tunnel TLS material reloaded');
      });
    return this.running;
  }

  /**
   * Watches the directories holding the files (editors and cert-manager-style tools replace files by
   * rename, which a watch on the file itself would miss) and reloads shortly after a change settles.
   */
  watch(debounceMs = 200): void {
    const byDir = new Map<string, Set<string>>();
    for (const f of [this.files.cert, this.files.key, this.files.clientCa, this.files.crl]) {
      if (!f) continue;
      const abs = resolve(f);
      const d = dirname(abs);
      if (!byDir.has(d)) byDir.set(d, new Set());
      byDir.get(d)!.add(basename(abs));
    }
    for (const [dir, names] of byDir) {
      try {
        const w = watch(dir, { persistent: false }, (_event, name) => {
          if (name && !names.has(name.toString())) return;
          if (this.debounce) clearTimeout(this.debounce);
          this.debounce = setTimeout(() => {
            this.debounce = null;
            this.reload().catch((e: Error) =>
              this.log.error(
                { err: e.message },
                'tunnel TLS material changed but is unusable; keeping the old',
              ),
            );
          }, debounceMs);
          this.debounce.unref();
        });
        w.on('error', (e) => this.log.warn({ dir, err: e.message }, 'watch on TLS material failed'));
        this.watchers.push(w);
      } catch (e) {
        this.log.warn({ dir, err: (e as Error).message }, 'cannot watch TLS material; reload on SIGHUP only');
      }
    }
  }

  close(): void {
    for (const w of this.watchers) w.close();
    this.watchers = [];
    if (this.debounce) clearTimeout(this.debounce);
  }
}
