/**
 * Issue 7 "done when" 3: the query page in headless Debian Chromium. A person pastes a registered
 * mail and sees "Authentic"; pastes a forged one and sees "Not registered"; a screenshot of each
 * is saved (test-output/). A form posted without the page's CSRF token is refused.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import { RegistryClient } from '../../src/registry/client.js';
import { launchBrowser, screenshotPath } from '../helpers/browser.js';
import { confirmationLink, registryForTest, waitForMail } from '../helpers/registry.js';

const MAIL = [
  'From: Example Bank <notices@bank.example>',
  'To: customer@mail.example',
  'Date: Tue, 24 Nov 2026 10:00:00 +0100',
  'Subject: Your card is on its way',
  '',
  'Dear customer,',
  '',
  'your new card was posted today.',
  '',
].join('\r\n');

test('query page in headless Chromium: paste a mail, see the verdict; screenshot saved; CSRF enforced', async (t) => {
  const reg = await registryForTest(t, 'sqlite');
  if (!reg) return;
  const base = reg.registry.url;
  const { token } = await new RegistryClient(base).createAccount('Example Bank');
  const api = new RegistryClient(base, token);
  const { ref } = await api.requestAddress('notices@bank.example');
  await waitForMail(reg.mail, 1);
  const code = confirmationLink(reg.mail.messages[0]?.data ?? Buffer.alloc(0)).searchParams.get('code') ?? '';
  await api.confirmAddress(ref, code);
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  await api.addKey(publicKey.export({ format: 'pem', type: 'spki' }).toString());
  const { mail: stamped, confirmationNo } = await api.registerMail(Buffer.from(MAIL), privateKey);

  const b = await launchBrowser(t);
  if (!b) return;
  t.after(() => b.close());
  const page = await b.browser.newPage({ viewport: { width: 900, height: 1100 } });

  await page.goto(`${base}/`);
  assert.equal(await page.title(), 'Check a mail — scangate registry');
  await page.fill('#mail', stamped.toString('utf8'));
  await page.click('#check');
  await page.waitForSelector('#verdict');
  assert.equal(await page.getAttribute('#verdict', 'data-verdict'), 'authentic');
  assert.match((await page.textContent('#verdict')) ?? '', /Authentic/);
  assert.match((await page.textContent('dl')) ?? '', new RegExp(confirmationNo.slice(0, 10)));
  await page.screenshot({ path: screenshotPath('registry-query-authentic'), fullPage: true });

  // A forged mail: same sender, never registered, carrying a copied X-Registered header.
  const forged = `X-Registered: Yes\r\n${MAIL.replace('your new card was posted today.', 'confirm your PIN at http://bank.example.evil/')}`;
  await page.fill('#mail', forged);
  await page.click('#check');
  await page.waitForSelector('#verdict[data-verdict]');
  assert.equal(await page.getAttribute('#verdict', 'data-verdict'), 'not-registered');
  assert.match((await page.textContent('#verdict')) ?? '', /Treat it as phishing/);
  await page.screenshot({ path: screenshotPath('registry-query-not-registered'), fullPage: true });

  // The same form posted from elsewhere (no cookie, no token) is refused.
  const res = await fetch(`${base}/check`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ mail: MAIL, csrf: 'forged' }),
  });
  assert.equal(res.status, 403);
  assert.match(await res.text(), /form expired or was not sent from this page/);
});
