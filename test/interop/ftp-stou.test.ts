/**
 * STOU through the FTP gateway: the server picks the file's name and says it in its 150
 * ("150 FILE: name", RFC 1123 §4.1.2.9), and the client must get that 150 before it sends. Real
 * vsftpd as the server; the client is Python's ftplib (Debian's python3, as mitmproxy brings it):
 * curl and lftp have no STOU. Plain and FTPS. A clean file lands under the name the client was
 * told, byte-identical, held (small) or streamed (above holdLimit); an infected one is refused with
 * 550, a too-big one with 552, and the file the server created under that name is deleted.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createBuiltinScanner } from '../../src/engine/index.js';
import type { Scanner } from '../../src/engine/types.js';
import { EICAR, EICAR_NAME } from '../helpers/eicar.js';
import { type FtpGatewayUnderTest, runClient, startFtpGatewayFor } from '../helpers/ftp-gateway.js';
import { startVsftpd, type Vsftpd } from '../helpers/ftp-vsftpd.js';
import { peer } from '../helpers/peers.js';
import { TestCa } from '../helpers/pki.js';

type Style = 'explicit' | 'none';
const MB = 1024 * 1024;
const dir = mkdtempSync(join(tmpdir(), 'scangate-ftp-stou-'));
let ca: TestCa;
let scanner: Scanner;
const cleanups: (() => Promise<void>)[] = [];

/**
 * ftplib client: STOU of one file into /pub; prints the replies to the STOU as JSON (the 150 and
 * the final one; ftplib raises on a 5xx, whose text is kept too).
 */
const STOU_CLIENT = `
import ftplib, json, ssl, sys
port, style, ca, path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
if style == 'explicit':
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    ftp = ftplib.FTP_TLS(context=ctx)
else:
    ftp = ftplib.FTP()
ftp.connect('127.0.0.1', port, timeout=60)
if style == 'explicit':
    ftp.auth()
ftp.login('anonymous', 'x')
if style == 'explicit':
    ftp.prot_p()
ftp.cwd('/pub')
replies = []
getresp = ftp.getresp
def recording():
    try:
        r = getresp()
    except ftplib.Error as e:
        replies.append(str(e))
        raise
    replies.append(r)
    return r
ftp.getresp = recording
try:
    with open(path, 'rb') as f:
        ftp.storbinary('STOU', f)
except ftplib.error_perm:
    pass
print(json.dumps(replies[-2:]))
ftp.quit()
`;

before(async () => {
  ca = await TestCa.create();
  scanner = await createBuiltinScanner({ cacheEntries: 0 });
});

after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

async function setup(
  style: Style,
  extra: Record<string, unknown> = {},
): Promise<{ gw: FtpGatewayUnderTest; vs: Vsftpd }> {
  const vs = await startVsftpd({ tls: style, ca });
  cleanups.push(() => vs.close());
  const gw = await startFtpGatewayFor(vs, {
    dir: mkdtempSync(join(dir, 'gw-')),
    scanner,
    tls: { client: style, upstream: style },
    passivePorts: '46700-46799',
    listener: { holdLimit: '1MB', keepBack: '256KB', ...extra },
  });
  cleanups.push(() => gw.close());
  return { gw, vs };
}

/** Runs one STOU; returns the 150's name and the final reply. */
async function stou(python: string, gw: FtpGatewayUnderTest, style: Style, content: Buffer) {
  const path = join(dir, `upload-${randomBytes(4).toString('hex')}.bin`);
  writeFileSync(path, content);
  const r = await runClient(python, ['-c', STOU_CLIENT, String(gw.port), style, gw.caFile, path]);
  assert.equal(r.code, 0, r.stderr);
  const [first, final] = JSON.parse(r.stdout) as [string, string];
  const name = /^150 FILE: (.+)$/.exec(first)?.[1];
  assert.ok(name, `no name in the 150: ${first}`);
  return { name, final };
}

describe('FTP gateway: STOU tells the client the name the server chose', { concurrency: false }, () => {
  for (const style of ['none', 'explicit'] as const) {
    const label = style === 'none' ? 'plain' : 'FTPS';
    test(`${label}: clean files (held and streamed) land under the name in the 150; infected ones are refused and deleted`, async (t) => {
      const python = peer(t, 'python3');
      if (!(python && peer(t, 'vsftpd'))) return;
      const { gw, vs } = await setup(style);
      const small = randomBytes(1000);
      const large = randomBytes(4 * MB);
      for (const content of [small, large]) {
        const { name, final } = await stou(python, gw, style, content);
        assert.match(final, /^226 /);
        assert.ok(readFileSync(join(vs.uploadDir, name)).equals(content), `${name} differs`);
      }
      const before = readdirSync(vs.uploadDir).sort();
      // EICAR alone is held whole; at the end of 4 MB it streams and is cut at the verdict.
      for (const content of [EICAR, Buffer.concat([randomBytes(4 * MB), EICAR])]) {
        const { name, final } = await stou(python, gw, style, content);
        assert.match(final, new RegExp(`^550 ${name}: refused, infected with ${EICAR_NAME}`));
        // The file the server created for the STOU is gone, and no other appeared.
        assert.deepEqual(readdirSync(vs.uploadDir).sort(), before);
      }
      const verdicts = gw.events.events.filter((e) => e.kind === 'verdict');
      assert.deepEqual(
        verdicts.map((v) => v.action),
        ['blocked', 'partiallyblocked'],
      );
    });
  }

  test('plain: a STOU over maxFileSize gets 552 after its named 150, and the file is deleted', async (t) => {
    const python = peer(t, 'python3');
    if (!(python && peer(t, 'vsftpd'))) return;
    const { gw, vs } = await setup('none', { maxFileSize: '3MB' });
    const { name, final } = await stou(python, gw, 'none', randomBytes(8 * MB));
    assert.match(final, /^552 /);
    assert.deepEqual(readdirSync(vs.uploadDir), [], `${name} stayed`);
  });
});
