/**
 * Issue 7 "done when" 5: bad input gets a clear 400/409 (413 for an oversized body, 401/403 for
 * who-you-are problems) and the tests show nothing was stored — on SQLite and on PostgreSQL.
 * Also: hostile JSON never makes the API answer 5xx.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { type TestContext, test } from 'node:test';
import fc from 'fast-check';
import { RegistryClient } from '../../src/registry/client.js';
import { makeProof } from '../../src/registry/keys.js';
import { messageSignature } from '../../src/registry/signature.js';
import type { RegistryDatabase } from '../../src/registry/tables.js';
import { confirmationLink, type Engine, registryForTest, waitForMail } from '../helpers/registry.js';

async function post(base: string, path: string, body: unknown, token?: string, type = 'application/json') {
  const res = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': type, ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: {
    error?: { code: string; message: string; field?: string; confirmationNo?: string };
    [k: string]: unknown;
  } = {};
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: res.status, json, text };
}

async function inputs(t: TestContext, engine: Engine) {
  // Rate limits off here (their own test below): this test sends far more than a person would.
  const off = { perMinute: 0, burst: 1 };
  const reg = await registryForTest(t, engine, {
    confirmAttempts: 3,
    rateLimits: { register: off, confirm: off, query: off },
  });
  if (!reg) return;
  const base = reg.registry.url;
  const db = reg.registry.service.database.db;
  const count = async (table: keyof RegistryDatabase) =>
    Number(
      (
        await db
          .selectFrom(table)
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );
  const snapshot = async () => ({
    accounts: await count('reg_accounts'),
    confirmations: await count('reg_confirmations'),
    bindings: await count('reg_bindings'),
    keys: await count('reg_keys'),
    messages: await count('reg_messages'),
    mails: reg.mail.messages.length,
  });

  const { token } = await new RegistryClient(base).createAccount("O'Brien & Co; DROP TABLE reg_accounts --");
  const sender = "o'brien@example.com";

  // -- addresses --
  let before = await snapshot();
  for (const address of [
    `${'a'.repeat(250)}@example.com`,
    'no-at-sign',
    'a b@example.com',
    'x@',
    '@x',
    'a@b..c',
    42,
  ]) {
    const r = await post(base, '/api/v1/addresses', { address }, token);
    assert.equal(r.status, 400, `${String(address).slice(0, 20)}: ${r.text}`);
    assert.equal(r.json.error?.field, 'address');
  }
  // 256 characters exactly (in code points, with non-ASCII) is still fine as far as validation goes.
  const long256 = `${'ä'.repeat(256 - '@example.com'.length)}@example.com`;
  assert.equal([...long256].length, 256);
  assert.equal((await post(base, '/api/v1/addresses', { address: `${long256}x` }, token)).status, 400);
  assert.deepEqual(await snapshot(), before, 'nothing stored, no mail sent');

  // Enrol the sender properly; then a replayed code is 409 and a wrong one 400, then spent.
  const pending = await new RegistryClient(base, token).requestAddress(sender);
  await waitForMail(reg.mail, 1);
  const code = confirmationLink(reg.mail.messages[0]?.data ?? Buffer.alloc(0)).searchParams.get('code') ?? '';
  assert.equal((await post(base, '/api/v1/addresses/confirm', { ref: pending.ref, code })).status, 200);
  before = await snapshot();
  const replay = await post(base, '/api/v1/addresses/confirm', { ref: pending.ref, code });
  assert.equal(replay.status, 409, replay.text);
  assert.equal(replay.json.error?.code, 'ERR_REGISTRY_REPLAY');
  assert.equal((await post(base, '/api/v1/addresses/confirm', { ref: 'x'.repeat(22), code })).status, 400);
  assert.deepEqual({ ...(await snapshot()), mails: 0 }, { ...before, mails: 0 }, 'replay changed nothing');

  const other = await new RegistryClient(base, token).requestAddress('second@example.com');
  // A mail bomb through the registry: at most 3 waiting confirmations per address.
  await new RegistryClient(base, token).requestAddress('second@example.com');
  await new RegistryClient(base, token).requestAddress('second@example.com');
  const bomb = await post(base, '/api/v1/addresses', { address: 'second@EXAMPLE.com' }, token);
  assert.equal(bomb.status, 429);
  assert.equal(bomb.json.error?.field, 'address');
  for (let i = 0; i < 3; i++) {
    const wrong = await post(base, '/api/v1/addresses/confirm', { ref: other.ref, code: 'WRONGCODE2' });
    assert.equal(wrong.status, 400);
    assert.equal(wrong.json.error?.code, 'ERR_REGISTRY_CODE');
  }
  const spent = await post(base, '/api/v1/addresses/confirm', { ref: other.ref, code: 'WRONGCODE2' });
  assert.equal(
    spent.json.error?.code,
    'ERR_REGISTRY_ATTEMPTS',
    'after 3 wrong codes even the right one is refused',
  );
  assert.equal(await count('reg_bindings'), 1);

  // -- keys --
  before = await snapshot();
  const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 })
    .publicKey.export({ format: 'der', type: 'spki' })
    .toString('base64');
  const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    .publicKey.export({ format: 'der', type: 'spki' })
    .toString('base64');
  for (const publicKey of [
    'not base64!!',
    'AAAA*AAA',
    'QUJD=',
    'A',
    Buffer.from('hello world, no key').toString('base64'),
    rsa1024,
    p256,
    '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----',
    { k: 1 },
  ]) {
    const r = await post(base, '/api/v1/keys', { publicKey }, token);
    assert.equal(r.status, 400, `${String(publicKey).slice(0, 30)} → ${r.text}`);
    assert.equal(r.json.error?.field, 'publicKey');
  }
  assert.deepEqual(await snapshot(), before, 'no key stored');
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const raw32 = publicKey.export({ format: 'der', type: 'spki' }).subarray(12).toString('base64');
  assert.equal(
    (await post(base, '/api/v1/keys', { publicKey: raw32 }, token)).status,
    201,
    'a bare 32-byte Ed25519 key is accepted',
  );
  assert.equal(
    (await post(base, '/api/v1/keys', { publicKey: raw32 }, token)).status,
    409,
    'the same key twice',
  );

  // -- messages --
  const good = { from: sender, to: 'customer@example.org', date: '20261123' };
  const signature = messageSignature({ ...good, content: 'hello\n' });
  const proof = makeProof(privateKey, signature).toString('base64');
  before = await snapshot();
  const bad: [Record<string, unknown>, number, string][] = [
    [{ ...good, date: '20251399' }, 400, 'date'],
    [{ ...good, date: '20250229' }, 400, 'date'],
    [{ ...good, date: '2025-11-23' }, 400, 'date'],
    [{ ...good, to: `${'b'.repeat(300)}@example.org` }, 400, 'to'],
    [{ ...good, signature: signature.slice(1) }, 400, 'signature'],
    [{ ...good, signature: `${signature.slice(1)}g` }, 400, 'signature'],
    [{ ...good, proof: 'not base64' }, 400, 'proof'],
    [
      { ...good, proof: makeProof(generateKeyPairSync('ed25519').privateKey, signature).toString('base64') },
      400,
      'proof',
    ],
    [
      { ...good, proof: makeProof(privateKey, signature.replace(/^./, 'f')).toString('base64') },
      400,
      'proof',
    ],
    [{ ...good, from: 'someone-else@example.com' }, 403, 'from'],
  ];
  for (const [body, status, field] of bad) {
    const r = await post(base, '/api/v1/messages', { signature, proof, ...body }, token);
    assert.equal(r.status, status, `${field}: ${r.text}`);
    assert.equal(r.json.error?.field, field);
  }
  assert.equal((await post(base, '/api/v1/messages', { ...good, signature, proof })).status, 401, 'no token');
  assert.equal(
    (await post(base, '/api/v1/messages', { ...good, signature, proof }, `sgr_${'A'.repeat(43)}`)).status,
    401,
    'wrong token',
  );
  assert.equal((await post(base, '/api/v1/messages', '{"from":', token)).status, 400, 'broken JSON');
  assert.equal((await post(base, '/api/v1/messages', '[1,2]', token)).status, 400, 'not an object');
  assert.equal((await post(base, '/api/v1/messages', { ...good }, token, 'text/plain')).status, 415);
  assert.deepEqual(await snapshot(), before, 'no message stored');

  // 10 MB bodies: refused whole with 413, nothing stored, the server still answers.
  const huge = Buffer.alloc(10 * 1024 ** 2, 0x61);
  const big = JSON.stringify({ ...good, signature, proof, padding: huge.toString() });
  const r413 = await post(base, '/api/v1/messages', big, token);
  assert.equal(r413.status, 413);
  assert.equal(r413.json.error?.code, 'ERR_REGISTRY_TOO_LARGE');
  const v413 = await post(base, '/api/v1/verify', { mail: `From: ${sender}\r\n\r\n${huge.toString()}` });
  assert.equal(v413.status, 413);
  assert.deepEqual(await snapshot(), before, 'nothing stored after 10 MB bodies');

  // The good registration goes through; the same again is 409 with its number.
  const ok = await post(base, '/api/v1/messages', { ...good, signature, proof }, token);
  assert.equal(ok.status, 201, ok.text);
  const again = await post(base, '/api/v1/messages', { ...good, signature, proof }, token);
  assert.equal(again.status, 409);
  assert.equal(again.json.error?.confirmationNo, ok.json.confirmationNo);
  assert.equal(await count('reg_messages'), 1);

  // Verify: bad fields are 400, never a verdict.
  for (const q of [
    { ...good, signature: 'x' },
    { ...good, date: '20261131', signature },
    { from: 1, to: 2, date: 3, signature },
  ])
    assert.equal((await post(base, '/api/v1/verify', q)).status, 400);
  assert.equal((await post(base, '/api/v1/verify', { ...good, signature })).json.verdict, 'authentic');

  // Change of account: the mailbox owner confirms for another account; the binding moves, the old
  // account can no longer register from the address, its registered mail stays authentic.
  const { token: token2 } = await new RegistryClient(base).createAccount('New owner');
  const mailsBefore = reg.mail.messages.length;
  const moved = await new RegistryClient(base, token2).requestAddress(sender);
  await waitForMail(reg.mail, mailsBefore + 1);
  const movedCode =
    confirmationLink(reg.mail.messages[mailsBefore]?.data ?? Buffer.alloc(0)).searchParams.get('code') ?? '';
  assert.equal(
    (await post(base, '/api/v1/addresses/confirm', { ref: moved.ref, code: movedCode })).status,
    200,
  );
  assert.equal(await count('reg_bindings'), 1, 'still one binding for the address');
  const signature2 = messageSignature({ ...good, content: 'second\n' });
  const proof2 = makeProof(privateKey, signature2).toString('base64');
  const stale = await post(
    base,
    '/api/v1/messages',
    { ...good, signature: signature2, proof: proof2 },
    token,
  );
  assert.equal(stale.status, 403, stale.text);
  assert.equal((await post(base, '/api/v1/verify', { ...good, signature })).json.verdict, 'authentic');

  // Hostile JSON objects: always a 4xx, never a 5xx, and never a stored message.
  await fc.assert(
    fc.asyncProperty(
      fc.dictionary(
        fc.constantFrom(
          'from',
          'to',
          'date',
          'signature',
          'proof',
          'keyId',
          'mail',
          'confirmationNo',
          'claimsRegistered',
        ),
        fc.anything(),
        { maxKeys: 7 },
      ),
      fc.constantFrom('/api/v1/messages', '/api/v1/verify', '/api/v1/keys', '/api/v1/addresses/confirm'),
      async (body, path) => {
        const r = await post(base, path, body, token);
        return r.status < 500;
      },
    ),
    { numRuns: 60 },
  );
  assert.equal(await count('reg_messages'), 1);

  // No secret in the logs: API tokens, mailed codes, proofs, the database password.
  assert.ok(reg.logs.length > 0, 'the registry did log');
  const logText = reg.logs.join('');
  const secrets = [token, token2, code, movedCode, proof];
  const dbPassword = /:\/\/[^:]+:([^@]+)@/.exec(String(reg.registry.service.database.url))?.[1];
  for (const secret of secrets) assert.ok(!logText.includes(secret), 'a secret reached the log');
  assert.ok(!dbPassword || dbPassword === '***', 'database URL redacted');
}

test('registry rejects bad input with 400/409/413 and stores nothing (SQLite)', (t) => inputs(t, 'sqlite'));
test('registry rejects bad input with 400/409/413 and stores nothing (PostgreSQL)', (t) =>
  inputs(t, 'postgres'));

test('rate limits: registration, confirmation and query budgets per client, 429 with Retry-After', async (t) => {
  const reg = await registryForTest(t, 'sqlite', {
    rateLimits: {
      register: { perMinute: 1, burst: 3 },
      confirm: { perMinute: 1, burst: 2 },
      query: { perMinute: 1, burst: 5 },
    },
  });
  if (!reg) return;
  const base = reg.registry.url;
  const statuses = async (n: number, send: () => Promise<{ status: number }>) => {
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push((await send()).status);
    return out;
  };
  assert.deepEqual(
    await statuses(4, () => post(base, '/api/v1/accounts', { name: 'x' })),
    [201, 201, 201, 429],
  );
  const q = { from: 'a@example.com', to: 'b@example.com', date: '20261123', signature: 'a'.repeat(128) };
  assert.deepEqual(await statuses(6, () => post(base, '/api/v1/verify', q)), [200, 200, 200, 200, 200, 429]);
  const bad = { ref: 'x'.repeat(22), code: 'WRONG' };
  assert.deepEqual(await statuses(3, () => post(base, '/api/v1/addresses/confirm', bad)), [400, 400, 429]);
  const res = await fetch(`${base}/api/v1/verify`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(q),
  });
  assert.equal(res.status, 429);
  assert.ok(Number(res.headers.get('retry-after')) >= 1);
  // Guessing tokens spends the confirmation budget too.
  assert.equal((await post(base, '/api/v1/keys', { publicKey: 'x' }, `sgr_${'B'.repeat(43)}`)).status, 429);
});
