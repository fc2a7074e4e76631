/**
 * `scangate ca init|show|export`: the interception CA clients must trust (README: "Trusting the CA").
 */
import { rm, writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { defaultConfig, loadConfigFile } from '../config/load.js';
import { ConfigError } from '../errors.js';
import { CertificateAuthority } from '../tls/ca.js';

interface CaOptions {
  config?: string;
  dataDir?: string;
}

async function caFiles(opts: CaOptions) {
  const config = opts.config ? await loadConfigFile(opts.config) : defaultConfig();
  const dataDir = opts.dataDir ?? config.dataDir;
  return { dataDir, cert: config.tls.ca.cert, key: config.tls.ca.key };
}

function describe(ca: CertificateAuthority): string {
  return [
    `subject:     ${ca.subject.replace(/\n/g, ', ')}`,
    `sha256:      ${ca.fingerprint256}`,
    `not after:   ${ca.notAfter.toISOString()}`,
    `certificate: ${ca.files.cert}`,
    `key:         ${ca.files.key} (keep private)`,
  ].join('\n');
}

export function registerCa(program: Command): void {
  const ca = program.command('ca').description('the interception CA clients must trust');
  const common = (c: Command) =>
    c
      .option('-c, --config <file>', 'YAML configuration file')
      .option('-d, --data-dir <dir>', 'data folder (default from the config: ./data)');

  common(ca.command('init').description('create the CA (ECDSA P-256, key mode 0600) unless it exists'))
    .option('--force', 'replace an existing CA (clients must then trust the new one)')
    .action(async (opts: CaOptions & { force?: boolean }) => {
      const f = await caFiles(opts);
      if (opts.force) {
        // Only the default locations are ours to replace; configured files belong to the operator.
        if (f.cert || f.key)
          throw new ConfigError('tls.ca', '--force does not replace a CA configured by tls.ca.cert/key');
        const files = CertificateAuthority.filesFor(f.dataDir);
        await Promise.all([rm(files.cert, { force: true }), rm(files.key, { force: true })]);
      }
      const { ca: authority, created } = await CertificateAuthority.loadOrCreate(f);
      process.stdout.write(`${created ? 'created' : 'already present'}\n${describe(authority)}\n`);
    });
  common(ca.command('show').description('show the CA in use')).action(async (opts: CaOptions) => {
    const f = await caFiles(opts);
    const authority = await CertificateAuthority.load(
      CertificateAuthority.filesFor(f.dataDir, f.cert, f.key),
    );
    process.stdout.write(`${describe(authority)}\n`);
  });
  common(ca.command('export').description('print the CA certificate (PEM), never the key'))
    .option('-o, --out <file>', 'write to a file instead of stdout')
    .action(async (opts: CaOptions & { out?: string }) => {
      const f = await caFiles(opts);
      const authority = await CertificateAuthority.load(
        CertificateAuthority.filesFor(f.dataDir, f.cert, f.key),
      );
      if (opts.out) await writeFile(opts.out, authority.certPem, { mode: 0o644 });
      else process.stdout.write(authority.certPem);
    });
}
