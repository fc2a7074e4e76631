/**
 * The registry in its own process for bench/registry.ts: started on 127.0.0.1:0 over the database
 * URL given as argv[2] (rate limits off), with one account whose address is bound directly in the
 * store (no mail round trip: the bench measures queries and registrations, not enrolment), an
 * Ed25519 key, and PRELOAD registered messages. Prints one JSON line with what the client needs.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import pino from 'pino';
import { configSchema } from '../../src/config/schema.js';
import { makeProof, messageSignature, startRegistry } from '../../src/registry/index.js';

const [database, dataDir, preloadText] = process.argv.slice(2) as [string, string, string];
const PRELOAD = Number(preloadText ?? 2000);
const off = { perMinute: 0, burst: 1 };
const config = configSchema.parse({
  dataDir,
  registry: { listen: '127.0.0.1:0', database, rateLimits: { register: off, confirm: off, query: off } },
}).registry;
if (!config) throw new Error('no registry config');
const registry = await startRegistry(config, dataDir, pino({ level: 'silent' }));
const service = registry.service;
const { accountId, token } = await service.createAccount('Bench Bank');
const sender = 'notices@bank.example';
await service.database.db
  .insertInto('reg_bindings')
  .values({ address: sender, account_id: accountId, bound_at: Date.now(), reminded_at: Date.now() })
  .execute();
const { privateKey, publicKey } = generateKeyPairSync('ed25519');
await service.addKey(accountId, publicKey.export({ format: 'der', type: 'spki' }).toString('base64'));
const messages: { from: string; to: string; date: string; signature: string; confirmationNo: string }[] = [];
for (let i = 0; i < PRELOAD; i++) {
  const m = { from: sender, to: `customer${i}@mail.example`, date: '20261123' };
  const signature = messageSignature({ ...m, content: `statement ${i} ${randomBytes(8).toString('hex')}\n` });
  const proof = makeProof(privateKey, signature).toString('base64');
  const r = await service.registerMessage(accountId, { ...m, signature, proof });
  messages.push({ ...m, signature, confirmationNo: r.confirmationNo });
}
process.stdout.write(
  `${JSON.stringify({ url: registry.url, token, sender, privateKey: privateKey.export({ format: 'pem', type: 'pkcs8' }), messages })}\n`,
);
process.on('SIGTERM', () => {
  registry.close().then(() => process.exit(0));
});
