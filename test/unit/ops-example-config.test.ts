/**
 * scangate.example.yaml stays true: it loads, the defaults it shows are the schema's defaults, and
 * every key the schema knows (walked from the zod definition, so a key added later fails this test
 * until it is documented) appears in it.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { resolveConfig } from '../../src/config/load.js';
import { configSchema } from '../../src/config/schema.js';

const FILE = join(import.meta.dirname, '..', '..', 'scangate.example.yaml');
const text = readFileSync(FILE, 'utf8');

interface Def {
  type: string;
  shape?: Record<string, { _zod: { def: Def } }>;
  innerType?: { _zod: { def: Def } };
  in?: { _zod: { def: Def } };
  out?: { _zod: { def: Def } };
  element?: { _zod: { def: Def } };
  options?: { _zod: { def: Def } }[];
}

function keysOf(def: Def, out: Set<string>): Set<string> {
  switch (def.type) {
    case 'object':
      for (const [k, v] of Object.entries(def.shape ?? {})) {
        out.add(k);
        keysOf(v._zod.def, out);
      }
      break;
    case 'optional':
    case 'nullable':
    case 'default':
    case 'prefault':
    case 'readonly':
    case 'catch':
      keysOf(def.innerType!._zod.def, out);
      break;
    case 'pipe':
      keysOf(def.in!._zod.def, out);
      keysOf(def.out!._zod.def, out);
      break;
    case 'array':
      keysOf(def.element!._zod.def, out);
      break;
    case 'union':
      for (const o of def.options ?? []) keysOf(o._zod.def, out);
      break;
  }
  return out;
}

test('the example loads and shows the real defaults', () => {
  const config = resolveConfig(parse(text));
  const defaults = resolveConfig({});
  for (const key of ['engine', 'tls', 'admin', 'events', 'drain', 'registry', 'workers', 'log'] as const)
    assert.deepEqual(config[key], defaults[key], `${key} in the example equals the default`);
  assert.deepEqual(
    config.listeners,
    resolveConfig({
      listeners: [
        { name: 'web', protocol: 'http', listen: '127.0.0.1:8080', allow: ['127.0.0.0/8', '::1/128'] },
      ],
    }).listeners,
  );
});

test('every configuration key is documented in the example', () => {
  const keys = keysOf((configSchema as unknown as { _zod: { def: Def } })._zod.def, new Set());
  assert.ok(keys.size > 100, `walked ${keys.size} keys`);
  const missing = [...keys].filter((k) => !new RegExp(`(^|[\\s{,#])${k}:`, 'm').test(text));
  assert.deepEqual(missing, [], 'keys missing from scangate.example.yaml');
});
