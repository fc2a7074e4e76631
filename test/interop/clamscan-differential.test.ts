/**
 * Differential test: a seeded, generated signature database (every .ndb body form and offset, .hdb,
 * .hsb SHA1/SHA256, .ldb operators and modifiers, .fp/.sfp, .ign2) and a corpus of random files with
 * planted matches (some straddling 64 KiB boundaries) and near misses. One real clamscan run over the
 * whole corpus is the oracle; our matcher must agree on clean vs infected for every file, and its name
 * set must contain the name clamscan printed.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { compileMatcher } from '../../src/engine/match/index.js';
import { loadSignatures } from '../../src/engine/signatures/index.js';
import { SignatureError } from '../../src/errors.js';
import { peer } from '../helpers/peers.js';
import {
  breakable,
  breakableGaps,
  type GenPattern,
  genPattern,
  instantiate,
  type Rng,
  rng,
} from '../helpers/sigdb.js';

const KIB64 = 65536;

interface Corpus {
  db: Record<string, string[]>;
  files: Map<string, { data: Buffer; note: string }>;
}

/**
 * Random bytes with 16 zero bytes first: without them clamscan takes most random files for UTF-16BE
 * text and also scans a decoded copy (cli_scanscript), a normalisation layer we do not replicate.
 */
function randomBinary(r: Rng, size: number): Buffer {
  const b = r.bytes(size);
  b.fill(0, 0, Math.min(16, size));
  return b;
}

function place(r: Rng, size: number, at: number, payload: Buffer): Buffer {
  const b = randomBinary(r, size);
  payload.copy(b, at);
  return b;
}

/** A file size and a start for an instance of `len` bytes: a third straddle a 64 KiB boundary. */
function layout(r: Rng, len: number): { size: number; start: number } {
  if (r.next() < 0.35) {
    const boundary = KIB64 * r.int(1, 2);
    const start = boundary - r.int(1, Math.max(1, len - 1));
    return { size: Math.max(start + len, boundary) + r.int(0, 5000), start };
  }
  const size = len + r.int(0, r.next() < 0.5 ? 3000 : 150_000);
  return { size, start: r.int(0, size - len) };
}

function genNdb(r: Rng, c: Corpus, count: number): void {
  const lines: string[] = [];
  for (let i = 0; i < count; i++) {
    const name = `Gen.Ndb.${i}`;
    const pat: GenPattern = genPattern(r);
    const inst = instantiate(r, pat);
    const len = inst.length;
    let { size, start } = layout(r, len);
    const offKind = r.pick(['*', '*', 'n', 'n,s', 'EOF-n', 'EOF-n,s'] as const);
    let offset = '*';
    let missStart: number | null = null;
    const shift = r.int(0, 40);
    if (offKind === 'n') {
      offset = `${start}`;
      missStart = start + 1 + r.int(0, 3);
    } else if (offKind === 'n,s') {
      const n = Math.max(0, start - r.int(0, shift));
      offset = `${n},${shift}`;
      missStart = n + shift + 1;
    } else if (offKind === 'EOF-n') {
      offset = `EOF-${size - start}`;
      missStart = start - 1 - r.int(0, 3);
    } else if (offKind === 'EOF-n,s') {
      const n = Math.min(size, size - start + r.int(0, shift));
      offset = `EOF-${n},${shift}`;
      missStart = size - n + shift + 1;
    }
    lines.push(`${name}:0:${offset}:${pat.hex}`);
    c.files.set(`ndb-${i}-hit`, {
      data: place(r, size, start, inst),
      note: `${name} ${offset} at ${start}/${size}`,
    });
    // Near miss: a wrong offset, a gap just out of range, or one element broken.
    const gaps = breakableGaps(pat);
    const mode =
      missStart !== null && r.next() < 0.4 ? 'offset' : gaps.length && r.next() < 0.4 ? 'gap' : 'elem';
    if (mode === 'offset' && missStart !== null && missStart >= 0 && missStart + len <= size) {
      c.files.set(`ndb-${i}-miss`, {
        data: place(r, size, missStart, inst),
        note: `${name} moved to ${missStart}`,
      });
    } else if (mode === 'gap') {
      const bad = instantiate(r, pat, { badGap: r.pick(gaps) });
      size = Math.max(size, start + bad.length);
      c.files.set(`ndb-${i}-miss`, { data: place(r, size, start, bad), note: `${name} gap out of range` });
    } else {
      const bad = instantiate(r, pat, { breakAt: r.pick(breakable(pat)) });
      const lay = layout(r, bad.length);
      c.files.set(`ndb-${i}-miss`, {
        data: place(r, lay.size, lay.start, bad),
        note: `${name} element broken`,
      });
    }
  }
  c.db['gen.ndb'] = lines;
}

const LETTERS = 'abcdefghijklmnopqrstuvwxyz';

/** A text subsignature for modifiers, its hex and a matching instance maker. */
function textSub(r: Rng, mods: string): { text: string; make: (q: Rng) => Buffer } {
  const word = Array.from({ length: r.int(4, 7) }, () => r.pick([...LETTERS])).join('');
  return {
    text: `${Buffer.from(word).toString('hex')}::${mods}`,
    make: (q) => {
      let w = word;
      if (mods.includes('i')) w = [...w].map((ch) => (q.next() < 0.5 ? ch.toUpperCase() : ch)).join('');
      let b = Buffer.from(w, 'latin1');
      if (mods.includes('w') && !(mods.includes('a') && q.next() < 0.5)) {
        const wide = Buffer.alloc(b.length * 2);
        for (let k = 0; k < b.length; k++) wide[2 * k] = b[k]!;
        b = wide;
      }
      if (mods.includes('f')) {
        // Half the time glued to a letter, which must defeat ::f.
        const edge = () => Buffer.from(q.next() < 0.5 ? ' ' : q.pick([...LETTERS]), 'latin1');
        b = Buffer.concat([edge(), b, edge()]);
      }
      return b;
    },
  };
}

const EXPRS = [
  '0&1',
  '0|1',
  '(0&1)|2',
  '0&(1|2)',
  '(0|1)>1',
  '(0|1|2)>1,2',
  '0=2',
  '0>1',
  '0<2&1',
  '(0|1)=2,2',
  '0&1=0',
  '(0&1&2)',
  '0>0,2&1',
];

function genLdb(r: Rng, c: Corpus, count: number): void {
  const lines: string[] = [];
  for (let i = 0; i < count; i++) {
    const name = `Gen.Ldb.${i}`;
    const expr = r.pick(EXPRS);
    // Subsignature indexes are the numbers not preceded by a modifier or a comma.
    const nsub = Math.max(...[...expr.matchAll(/(?<![=<>,0-9])[0-9]+/g)].map((m) => Number(m[0]))) + 1;
    const subs: { text: string; make: (q: Rng) => Buffer }[] = [];
    let needs81 = false;
    // Subsig 0 may carry an offset: `L:` / `L-s,s:` (right after the lead-in) or `EOF-n:` (at the end).
    const lead = r.int(16, 2000);
    const anchor = r.pick(['none', 'none', 'abs', 'abs-shift', 'eof'] as const);
    const tail = r.int(0, 60);
    for (let s = 0; s < nsub; s++) {
      const kind =
        s === 0 && anchor !== 'none' ? 'offset' : r.pick(['hex', 'hex', 'i', 'w', 'wa', 'f', 'iw', 'if']);
      if (kind === 'offset') {
        const pat = genPattern(r, { parts: 1 });
        const len = instantiate(r, pat).length;
        const shift = r.int(1, 8);
        const off =
          anchor === 'abs'
            ? `${lead}`
            : anchor === 'abs-shift'
              ? `${lead - shift},${shift}`
              : `EOF-${len + tail}`;
        subs.push({ text: `${off}:${pat.hex}`, make: (q) => instantiate(q, pat) });
      } else if (kind === 'hex') {
        const pat = genPattern(r, { parts: r.int(1, 2) });
        subs.push({ text: pat.hex, make: (q) => instantiate(q, pat) });
      } else {
        needs81 = true;
        subs.push(textSub(r, kind));
      }
    }
    lines.push(
      `${name};Engine:${needs81 ? 81 : 51}-255,Target:0;${expr};${subs.map((s) => s.text).join(';')}`,
    );
    for (const variant of ['a', 'b']) {
      const pieces: Buffer[] = [];
      subs.forEach((s, idx) => {
        if (idx === 0 && anchor !== 'none') return;
        const k = variant === 'a' ? r.pick([1, 1, 2, 3]) : r.pick([0, 0, 1, 2]);
        for (let n = 0; n < k; n++) pieces.push(s.make(r));
      });
      const parts: Buffer[] = [randomBinary(r, lead)];
      // The offset subsig: in place for 'a'; for 'b' one byte off half the time.
      const off0 = anchor !== 'none' ? subs[0]!.make(r) : null;
      const slip = variant === 'b' && r.next() < 0.5 ? r.bytes(1) : Buffer.alloc(0);
      if (off0 && anchor !== 'eof') parts.push(slip, off0, r.bytes(r.int(1, 500)));
      for (const p of pieces.sort(() => r.next() - 0.5)) parts.push(p, r.bytes(r.int(1, 3000)));
      if (off0 && anchor === 'eof') parts.push(off0, slip, r.bytes(tail));
      c.files.set(`ldb-${i}-${variant}`, { data: Buffer.concat(parts), note: `${name} ${expr} ${anchor}` });
    }
  }
  c.db['gen.ldb'] = lines;
}

function genHashes(r: Rng, c: Corpus, count: number): void {
  const hdb: string[] = [];
  const hsb: string[] = [];
  for (let i = 0; i < count; i++) {
    const data = randomBinary(r, r.int(1, 90_000));
    const algo = r.pick(['md5', 'sha1', 'sha256'] as const);
    const digest = createHash(algo).update(data).digest('hex');
    const name = `Gen.Hash.${algo}.${i}`;
    const kind = r.pick(['size', 'size', 'star', 'wrong']);
    const size = kind === 'star' ? '*' : String(kind === 'wrong' ? data.length + 1 : data.length);
    const line = `${digest}:${size}:${name}${kind === 'star' ? ':73' : ''}`;
    (algo === 'md5' ? hdb : hsb).push(line);
    c.files.set(`hash-${i}-${kind}`, { data, note: line });
  }
  c.db['gen.hdb'] = hdb;
  c.db['gen.hsb'] = hsb;
}

/** Allow-list and ignore cases: some ndb hit files listed in .fp/.sfp, some names in .ign2. */
function genAllow(c: Corpus): void {
  const fp: string[] = [];
  const sfp: string[] = [];
  for (const i of [0, 3, 6]) {
    const f = c.files.get(`ndb-${i}-hit`)!;
    fp.push(`${createHash('md5').update(f.data).digest('hex')}:${f.data.length}:Clean.File.${i}`);
  }
  for (const i of [9, 12]) {
    const f = c.files.get(`ndb-${i}-hit`)!;
    sfp.push(`${createHash('sha256').update(f.data).digest('hex')}:${f.data.length}:Clean.File.${i}`);
  }
  c.db['gen.fp'] = fp;
  c.db['gen.sfp'] = sfp;
  c.db['gen.ign2'] = ['Gen.Ndb.1', 'Gen.Ndb.4', 'Gen.Ldb.2'];
}

/**
 * Target types we gate by magic (1 MZ, 6 ELF, 9 Mach-O, 10 PDF): a typed signature planted in a file of
 * that type, in a file of another type, and in plain binary data.
 */
function genTargets(r: Rng, c: Corpus): void {
  const heads: Record<number, Buffer> = {
    1: Buffer.from('MZ\x90\x00', 'latin1'),
    6: Buffer.from('\x7fELF\x02\x01\x01\x00', 'latin1'),
    9: Buffer.from('cffaedfe07000001', 'hex'),
    10: Buffer.from('%PDF-1.4\n', 'latin1'),
  };
  const lines: string[] = [];
  for (const [target, head] of Object.entries(heads)) {
    for (let i = 0; i < 3; i++) {
      const name = `Gen.Target${target}.${i}`;
      const payload = r.bytes(12);
      lines.push(`${name}:${target}:*:${payload.toString('hex')}`);
      const other = heads[Number(target) === 6 ? 10 : 6]!;
      for (const [kind, prefix] of [
        ['own', head],
        ['other', other],
        ['plain', Buffer.alloc(0)],
      ] as const) {
        const body = randomBinary(r, r.int(100, 5000));
        const data = Buffer.concat([prefix, Buffer.alloc(16), body, payload, randomBinary(r, 50)]);
        c.files.set(`target-${target}-${i}-${kind}`, { data, note: `${name} in ${kind}` });
      }
    }
  }
  c.db['gen-targets.ndb'] = lines;
}

function parseClamscan(out: string): Map<string, string | null> {
  const m = new Map<string, string | null>();
  for (const line of out.split('\n')) {
    const ok = /^(.*): OK$/.exec(line);
    if (ok) m.set(ok[1]!, null);
    const found = /^(.*): (\S+) FOUND$/.exec(line);
    if (found) m.set(found[1]!, found[2]!.replace(/\.UNOFFICIAL$/, ''));
  }
  return m;
}

test(
  'scangate and clamscan give the same verdict on a generated database and corpus',
  {
    timeout: 120_000,
  },
  async (t) => {
    const clamscan = peer(t, 'clamscan', 'clamav');
    if (!clamscan) return;
    const root = mkdtempSync(join(tmpdir(), 'scangate-diff-'));
    try {
      const r = rng(Number(process.env.SCANGATE_DIFF_SEED ?? 20261123));
      const c: Corpus = { db: {}, files: new Map() };
      genNdb(r, c, 400);
      genLdb(r, c, 100);
      genHashes(r, c, 40);
      genAllow(c);
      genTargets(r, c);
      const dbDir = join(root, 'db');
      const corpus = join(root, 'corpus');
      mkdirSync(dbDir);
      mkdirSync(corpus);
      for (const [name, lines] of Object.entries(c.db))
        writeFileSync(join(dbDir, name), `${lines.join('\n')}\n`);
      for (const [name, f] of c.files) writeFileSync(join(corpus, name), f.data);

      const t0 = Date.now();
      const res = spawnSync(clamscan, ['--no-summary', '-d', dbDir, corpus], {
        encoding: 'utf8',
        maxBuffer: 64 << 20,
      });
      t.diagnostic(`clamscan: ${Date.now() - t0} ms, exit ${res.status}`);
      assert.ok(res.status === 0 || res.status === 1, `clamscan failed (${res.status}): ${res.stderr}`);
      const theirs = parseClamscan(res.stdout);

      const db = await loadSignatures([dbDir], { builtin: false });
      assert.deepEqual(db.unsupported, []);
      const m = compileMatcher(db);
      const mismatches: string[] = [];
      let infected = 0;
      for (const [name, f] of c.files) {
        const path = join(corpus, name);
        assert.ok(theirs.has(path), `clamscan said nothing about ${name}`);
        const their = theirs.get(path)!;
        const s = m.session({ size: f.data.length, allMatches: true });
        // Feed in uneven chunks, as sockets do.
        for (let off = 0, k = 0; off < f.data.length; k++) {
          const n = [1, 7, 4096, 65536, 100_000][k % 5]!;
          s.write(f.data.subarray(off, off + n));
          off += n;
        }
        const ours = s.end();
        if (their) infected++;
        if ((their === null) !== (ours.length === 0) || (their !== null && !ours.includes(their))) {
          mismatches.push(
            `${name}: clamscan=${their ?? 'OK'} scangate=${ours.join(',') || 'OK'} (${f.note})`,
          );
        }
      }
      t.diagnostic(
        `${c.files.size} files, ${infected} infected per clamscan, ${mismatches.length} mismatches`,
      );
      assert.ok(infected > c.files.size / 4, 'the corpus should have plenty of detections');
      assert.deepEqual(mismatches, []);
    } finally {
      // SCANGATE_KEEP_DIFF=1 keeps the database and corpus for investigation.
      if (process.env.SCANGATE_KEEP_DIFF === '1') t.diagnostic(`kept ${root}`);
      else rmSync(root, { recursive: true, force: true });
    }
  },
);

test('a malformed line: clamscan refuses the database, we throw SignatureError naming file:line', async (t) => {
  const clamscan = peer(t, 'clamscan', 'clamav');
  if (!clamscan) return;
  const root = mkdtempSync(join(tmpdir(), 'scangate-bad-'));
  try {
    const db = join(root, 'bad.ndb');
    writeFileSync(db, 'Good.Sig:0:*:41424344454647\nBroken.Sig:0:*:4142zz44\n');
    writeFileSync(join(root, 'x.bin'), 'ABCDEFG');
    const res = spawnSync(clamscan, ['--no-summary', '-d', db, join(root, 'x.bin')], { encoding: 'utf8' });
    assert.equal(res.status, 2, res.stdout);
    assert.match(res.stderr, /Malformed database|Problem parsing database at line 2/);
    await assert.rejects(loadSignatures([db]), (e: unknown) => {
      assert.ok(e instanceof SignatureError);
      assert.equal(e.line, 2);
      assert.equal(e.file, db);
      assert.match(e.message, /bad\.ndb:2:/);
      return true;
    });
    void readFileSync;
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
