/**
 * `scangate registry …`: a sender's side of the registry from the command line.
 *   keygen --out KEY.pem                 Ed25519 key pair; prints the public key to upload
 *   account NAME [--token-out FILE]      create an account; its token goes to FILE (0600) or stdout
 *   address add|confirm|remove|list      prove ownership of an address by the mailed code
 *   key add (PUBLIC|--private KEY.pem)   upload a public key
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { RegistryClient } from '../registry/client.js';
import { registryToken, registryUrl } from './registry-common.js';

interface Common {
  registry?: string;
  config?: string;
  tokenFile?: string;
}

const withLocation = (c: Command) =>
  c
    .option(
      '--registry <url>',
      'registry URL (or $SCANGATE_REGISTRY; default from -c, else http://127.0.0.1:8025)',
    )
    .option('-c, --config <file>', 'YAML configuration file (for the registry URL)');
const withToken = (c: Command) =>
  withLocation(c).option('--token-file <file>', 'API token file (or $SCANGATE_REGISTRY_TOKEN)');

async function authed(opts: Common): Promise<RegistryClient> {
  return new RegistryClient(await registryUrl(opts), await registryToken(opts));
}

const out = (s: string) => process.stdout.write(`${s}\n`);

export function registerRegistry(program: Command): void {
  const reg = program.command('registry').description('anti-phishing registry: keys, account, addresses');

  reg
    .command('keygen')
    .description('create an Ed25519 signing key (PKCS #8 PEM, mode 0600); print its public key (base64 SPKI)')
    .requiredOption('--out <file>', 'where the private key goes (not overwritten)')
    .action(async (opts: { out: string }) => {
      const { privateKey, publicKey } = generateKeyPairSync('ed25519');
      await writeFile(opts.out, privateKey.export({ format: 'pem', type: 'pkcs8' }), {
        mode: 0o600,
        flag: 'wx',
      });
      out(publicKey.export({ format: 'der', type: 'spki' }).toString('base64'));
    });

  withLocation(reg.command('account'))
    .description('create an account; its API token is shown once')
    .argument('<name>', 'organisation or person name')
    .option('--token-out <file>', 'write the token to this file (mode 0600) instead of stdout')
    .action(async (name: string, opts: Common & { tokenOut?: string }) => {
      const r = await new RegistryClient(await registryUrl(opts)).createAccount(name);
      if (opts.tokenOut) {
        await writeFile(opts.tokenOut, `${r.token}\n`, { mode: 0o600, flag: 'wx' });
        out(`account ${r.accountId}; token written to ${opts.tokenOut}`);
      } else out(r.token);
    });

  const address = reg.command('address').description('addresses bound to the account');
  withToken(address.command('add'))
    .description('mail a confirmation code to the address')
    .argument('<address>')
    .action(async (a: string, opts: Common) => {
      const r = await (await authed(opts)).requestAddress(a);
      out(`confirmation mailed to ${a}; reference ${r.ref}, expires ${r.expiresAt}`);
    });
  withLocation(address.command('confirm'))
    .description('confirm with the code from the mail')
    .argument('<ref>')
    .argument('<code>')
    .action(async (ref: string, code: string, opts: Common) => {
      const r = await new RegistryClient(await registryUrl(opts)).confirmAddress(ref, code);
      out(`${r.address} confirmed`);
    });
  withToken(address.command('remove'))
    .description('unbind an address from the account')
    .argument('<address>')
    .action(async (a: string, opts: Common) => {
      await (await authed(opts)).request('DELETE', `/api/v1/addresses/${encodeURIComponent(a)}`);
      out(`${a} removed`);
    });
  withToken(address.command('list'))
    .description('list the bound addresses')
    .action(async (opts: Common) => {
      const list = await (await authed(opts)).request<{ address: string; boundAt: string }[]>(
        'GET',
        '/api/v1/addresses',
      );
      for (const a of list) out(`${a.address}\t${a.boundAt}`);
    });

  withToken(reg.command('key').command('add'))
    .description('upload a public key (base64 SPKI or PEM file), or the public half of --private')
    .argument('[public]', 'public key: base64 text or a PEM file path')
    .option('--private <file>', 'derive the public key from this private key file')
    .action(async (pub: string | undefined, opts: Common & { private?: string }) => {
      let key: string;
      if (opts.private)
        key = createPublicKey(createPrivateKey(await readFile(opts.private)))
          .export({ format: 'der', type: 'spki' })
          .toString('base64');
      else if (pub && /\.pem$/i.test(pub)) key = await readFile(pub, 'utf8');
      else if (pub) key = pub;
      else throw new Error('give a public key or --private KEY.pem');
      const r = await (await authed(opts)).addKey(key);
      out(`${r.algorithm} key ${r.id}`);
    });
}
