import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { resolveConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { parseDuration, parseSize } from '../../src/util/units.js';

test('empty config gives the built-in default: explicit proxy on 8080, admin on 9090', () => {
  const c = resolveConfig({});
  assert.equal(c.dataDir, './data');
  assert.equal(c.listeners.length, 1);
  const web = c.listeners[0]!;
  assert.equal(web.protocol, 'http');
  assert.equal(web.listen, '127.0.0.1:8080');
  assert.equal(web.protocol === 'http' && web.mode, 'explicit');
  assert.equal(c.admin?.listen, '127.0.0.1:9090');
  assert.deepEqual(
    { ...c.engine.limits },
    {
      maxFileSize: 100 * 1024 ** 2,
      maxScanSize: 400 * 1024 ** 2,
      maxRecursion: 17,
      maxFiles: 10_000,
      timeout: 120_000,
      alertExceedsMax: true,
      maxCompressionRatio: 1000,
    },
  );
  assert.equal(c.tls.upstream.verify, true);
});

test('unknown keys are rejected with their path', () => {
  assert.throws(
    () => resolveConfig({ engine: { limts: {} } }),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.equal(e.code, 'ERR_CONFIG');
      assert.match(e.message, /^engine: unknown key limts/);
      return true;
    },
  );
  assert.throws(
    () => resolveConfig({ listeners: [{ name: 'w', protocol: 'http', listen: '127.0.0.1:1', bogus: true }] }),
    /listeners\.0: unknown key bogus/,
  );
});

test('bad values name the key path', () => {
  assert.throws(
    () => resolveConfig({ engine: { limits: { maxFileSize: 'lots' } } }),
    /engine\.limits\.maxFileSize: not a size/,
  );
  assert.throws(() => resolveConfig({ engine: { backend: 'magic' } }), /engine\.backend/);
  assert.throws(
    () => resolveConfig({ listeners: [{ name: 'w', protocol: 'http', listen: 'nowhere' }] }),
    /listeners\.0\.listen/,
  );
  assert.throws(
    () =>
      resolveConfig({
        listeners: [
          { name: 'a', protocol: 'http', listen: '127.0.0.1:1' },
          { name: 'a', protocol: 'http', listen: '127.0.0.1:2' },
        ],
      }),
    /listeners\.1\.name: duplicate listener name/,
  );
});

test('sizes and durations parse in the units operators write', () => {
  assert.equal(parseSize('100MB'), 100 * 1024 * 1024);
  assert.equal(parseSize('64KiB'), 65536);
  assert.equal(parseSize(12), 12);
  assert.equal(parseDuration('120s'), 120_000);
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('5m'), 300_000);
  assert.throws(() => parseSize('12 parsecs'));
  assert.throws(() => parseDuration('-1s'));
});

test('the config resolver never throws anything but ConfigError on arbitrary input', () => {
  fc.assert(
    fc.property(fc.anything(), (input) => {
      try {
        resolveConfig(input);
      } catch (e) {
        assert.ok(e instanceof ConfigError, String(e));
      }
    }),
    { numRuns: 500 },
  );
});
