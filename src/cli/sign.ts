/**
 * The registry's mail commands (DESIGN 4.1):
 *   scangate sign --from A --to B --date YYYYMMDD [FILE|-]     the 128-character signature
 *   scangate sign --mail FILE.eml                              … of a mail (fields from its headers)
 *   scangate register [--registry URL] --key KEY.pem [-o OUT] FILE.eml   register, stamp X-Registered
 *   scangate verify [--registry URL] [--json] FILE.eml         0 authentic, 1 not, 2 error
 */
import { createPrivateKey } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, rename, writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { ScangateError } from '../errors.js';
import { RegistryClient } from '../registry/client.js';
import { queryOfMail } from '../registry/mailcheck.js';
import { streamSignature } from '../registry/signature.js';
import { readMailFile, registryToken, registryUrl } from './registry-common.js';

interface SignOptions {
  from?: string;
  to?: string;
  date?: string;
  mail?: boolean;
}

export function registerSign(program: Command): void {
  program
    .command('sign')
    .description('print the 128-character registry signature of a message (README "Anti-phishing registry")')
    .option('--from <address>', 'sender address')
    .option('--to <address>', 'recipient address')
    .option('--date <YYYYMMDD>', 'date the mail is sent')
    .option('--mail', 'FILE is a mail: sender, recipient, date and content come from it')
    .argument('[file]', 'content (UTF-8 text; - or nothing for stdin)', '-')
    .action(async (file: string, opts: SignOptions) => {
      if (opts.mail) {
        const q = queryOfMail(await readMailFile(file));
        process.stdout.write(`${q.signature}\n`);
        return;
      }
      if (!opts.from || !opts.to || !opts.date)
        throw new ScangateError('ERR_USAGE', 'sign needs --from, --to and --date (or --mail FILE.eml)');
      const input = file === '-' ? process.stdin : createReadStream(file);
      const sig = await streamSignature({ from: opts.from, to: opts.to, date: opts.date }, input);
      process.stdout.write(`${sig}\n`);
    });

  program
    .command('register')
    .description('register a mail with the registry and stamp X-Registered / X-Confirmation-No into it')
    .requiredOption('--key <file>', 'private key (PEM, Ed25519 or RSA) whose public key the account uploaded')
    .option('--token-file <file>', 'API token file (or $SCANGATE_REGISTRY_TOKEN)')
    .option(
      '--registry <url>',
      `registry URL (or $SCANGATE_REGISTRY; default from -c, else http://127.0.0.1:8025)`,
    )
    .option('-c, --config <file>', 'YAML configuration file (for the registry URL)')
    .option('-o, --out <file>', 'write the stamped mail here instead of replacing FILE')
    .argument('<file>', 'the mail (.eml)')
    .action(
      async (
        file: string,
        opts: { key: string; tokenFile?: string; registry?: string; config?: string; out?: string },
      ) => {
        const client = new RegistryClient(await registryUrl(opts), await registryToken(opts));
        const key = createPrivateKey(await readFile(opts.key));
        const r = await client.registerMail(await readMailFile(file), key);
        const out = opts.out ?? file;
        // Replace atomically: a crash never leaves a half-written mail.
        const tmp = `${out}.scangate-${process.pid}.tmp`;
        await writeFile(tmp, r.mail, { mode: 0o644 });
        await rename(tmp, out);
        process.stdout.write(`${r.confirmationNo}${r.existing ? ' (already registered)' : ''}\n`);
      },
    );

  program
    .command('verify')
    .description('verify a received mail against the registry: exit 0 authentic, 1 not, 2 error')
    .option(
      '--registry <url>',
      'registry URL (or $SCANGATE_REGISTRY; default from -c, else http://127.0.0.1:8025)',
    )
    .option('-c, --config <file>', 'YAML configuration file (for the registry URL)')
    .option('--json', 'print the registry answer as JSON')
    .argument('<file>', 'the mail (.eml), - for stdin')
    .action(async (file: string, opts: { registry?: string; config?: string; json?: boolean }) => {
      const q = queryOfMail(await readMailFile(file));
      const r = await new RegistryClient(await registryUrl(opts)).verify(
        q as unknown as Record<string, unknown>,
      );
      if (opts.json) process.stdout.write(`${JSON.stringify({ ...r, signature: q.signature })}\n`);
      else
        process.stdout.write(
          `${file}: ${r.verdict}${r.confirmationNo ? ` (${r.confirmationNo})` : ''}: ${r.reason}\n`,
        );
      process.exitCode = r.verdict === 'authentic' ? 0 : 1;
    });
}
