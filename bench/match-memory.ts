/**
 * Memory held by a compiled matcher per hash signature (1M .hdb lines). Run:
 * node --expose-gc --import tsx bench/match-memory.ts
 */

import { compileMatcher } from '../src/engine/match/index.js';
import { SignatureDbBuilder } from '../src/engine/signatures/index.js';
import { rng } from '../test/helpers/sigdb.js';

const r = rng(1);
const N = 1_000_000;
const parts: string[] = [];
for (let i = 0; i < N; i++)
  parts.push(`${r.bytes(16).toString('hex')}:${r.int(1, 10_000_000)}:Win.Trojan.Agent-${1000000 + i}-0\n`);
const text = Buffer.from(parts.join(''));
parts.length = 0;
const mem = () => {
  global.gc!();
  global.gc!();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
};
let m: ReturnType<typeof compileMatcher> | null = (() => {
  const b = new SignatureDbBuilder();
  b.addFile('m.hdb', text);
  return compileMatcher(b.build());
})();
const withM = mem();
const count = m.signatureCount;
m = null;
const without = mem();
console.log(
  `${count} hdb signatures: compiled matcher holds ~${Math.round((withM - without) / N)} bytes/sig`,
);
