/**
 * The Redis client's RESP2 reader and writer, sans-IO: any reply sequence split anywhere reads back
 * the same; requests are arrays of bulk strings any RESP reader takes apart; hostile bytes give a
 * typed protocol error or wait for more, never a hang or a crash; stored verdicts are validated.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { decodeVerdict } from '../../src/engine/cache-redis.js';
import {
  encodeCommand,
  parseRedisUrl,
  RespError,
  RespReader,
  type RespValue,
} from '../../src/engine/cache-resp.js';
import { ScangateError } from '../../src/errors.js';

type Model =
  | { t: 'simple'; v: string }
  | { t: 'err'; v: string }
  | { t: 'int'; v: number }
  | { t: 'bulk'; v: Buffer | null }
  | { t: 'arr'; v: Model[] | null };

const line = fc.string({ maxLength: 30 }).filter((s) => !/[\r\n]/.test(s));
const model: fc.Arbitrary<Model> = fc.letrec<{ m: Model }>((tie) => ({
  m: fc.oneof(
    { depthSize: 'small' },
    line.map((v) => ({ t: 'simple' as const, v })),
    line.map((v) => ({ t: 'err' as const, v })),
    fc.integer({ min: -1e12, max: 1e12 }).map((v) => ({ t: 'int' as const, v })),
    fc
      .option(fc.uint8Array({ maxLength: 60 }).map((a) => Buffer.from(a)))
      .map((v) => ({ t: 'bulk' as const, v })),
    fc.option(fc.array(tie('m'), { maxLength: 4 })).map((v) => ({ t: 'arr' as const, v })),
  ),
})).m;

function encode(m: Model): Buffer {
  switch (m.t) {
    case 'simple':
      return Buffer.from(`+${m.v}\r\n`, 'latin1');
    case 'err':
      return Buffer.from(`-${m.v}\r\n`, 'latin1');
    case 'int':
      return Buffer.from(`:${m.v}\r\n`);
    case 'bulk':
      return m.v === null
        ? Buffer.from('$-1\r\n')
        : Buffer.concat([Buffer.from(`$${m.v.length}\r\n`), m.v, Buffer.from('\r\n')]);
    case 'arr':
      return m.v === null
        ? Buffer.from('*-1\r\n')
        : Buffer.concat([Buffer.from(`*${m.v.length}\r\n`), ...m.v.map(encode)]);
  }
}

function expected(m: Model): RespValue {
  switch (m.t) {
    case 'simple':
      return Buffer.from(m.v, 'latin1').toString('latin1');
    case 'err':
      return new RespError(Buffer.from(m.v, 'latin1').toString('latin1'));
    case 'int':
      return m.v;
    case 'bulk':
      return m.v;
    case 'arr':
      return m.v === null ? null : m.v.map(expected);
  }
}

function norm(v: RespValue): unknown {
  if (v instanceof RespError) return { err: v.message };
  if (Array.isArray(v)) return v.map(norm);
  return v;
}

test('property: replies split anywhere read back as sent', () => {
  fc.assert(
    fc.property(
      fc.array(model, { minLength: 1, maxLength: 6 }),
      fc.array(fc.nat(), { maxLength: 8 }),
      (ms, cuts) => {
        const whole = Buffer.concat(ms.map(encode));
        const points = [...new Set(cuts.map((c) => c % (whole.length + 1)))].sort((a, b) => a - b);
        const reader = new RespReader();
        const got: RespValue[] = [];
        let last = 0;
        for (const p of [...points, whole.length]) {
          got.push(...reader.push(whole.subarray(last, p)));
          last = p;
        }
        assert.deepEqual(got.map(norm), ms.map(expected).map(norm));
      },
    ),
    { numRuns: 300 },
  );
});

test('property: a request is an array of bulk strings that reads back as its arguments', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          fc.string(),
          fc.uint8Array().map((a) => Buffer.from(a)),
        ),
        { minLength: 1, maxLength: 6 },
      ),
      (args) => {
        const [v] = new RespReader().push(encodeCommand(args));
        assert.deepEqual(
          v,
          args.map((a) => (typeof a === 'string' ? Buffer.from(a, 'utf8') : Buffer.from(a))),
        );
      },
    ),
  );
});

test('property: hostile bytes give values, a wait for more, or a typed protocol error', () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 80 }), { maxLength: 6 }), (pieces) => {
      const reader = new RespReader();
      try {
        for (const p of pieces) reader.push(Buffer.from(p));
      } catch (e) {
        assert.ok(e instanceof ScangateError && e.code === 'ERR_REDIS_PROTOCOL', String(e));
      }
    }),
    { numRuns: 500 },
  );
  assert.throws(() => new RespReader().push(Buffer.from('$999999999999\r\n')), /bad bulk length/);
  assert.throws(() => new RespReader().push(Buffer.from('?x\r\n')), /unknown redis reply type/);
  assert.throws(() => new RespReader().push(Buffer.from('+OK\n')), /CRLF/);
  assert.deepEqual(new RespReader().push(Buffer.from('$5\r\nhel')), []);
});

test('redis URLs and stored verdicts', () => {
  assert.deepEqual(parseRedisUrl('redis://:s3cret@cache.example:6380/2'), {
    host: 'cache.example',
    port: 6380,
    username: undefined,
    password: 's3cret',
    db: 2,
  });
  assert.deepEqual(parseRedisUrl('/run/redis.sock'), { path: '/run/redis.sock' });
  assert.deepEqual(parseRedisUrl('unix:///run/redis.sock'), { path: '/run/redis.sock' });
  assert.throws(() => parseRedisUrl('http://x'), /not a redis/);
  assert.deepEqual(decodeVerdict('{"status":"clean"}'), { status: 'clean' });
  assert.deepEqual(decodeVerdict('{"status":"infected","signature":"X","location":["a"]}'), {
    status: 'infected',
    signature: 'X',
    location: ['a'],
  });
  for (const bad of [
    '',
    'null',
    '{"status":"error","reason":"x"}',
    '{"status":"infected","signature":1}',
    '{',
  ])
    assert.equal(decodeVerdict(bad), undefined, bad);
});
