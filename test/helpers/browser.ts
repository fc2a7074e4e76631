/**
 * Headless Debian Chromium driven by playwright-core, for tests that look at a page as a person
 * would (the registry's query page, the admin dashboard). Screenshots go to test-output/, which
 * is gitignored, so a failed CI run can be inspected and a passing one shows what users see.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { type Browser, chromium } from 'playwright-core';
import { peer } from './peers.js';

export const SCREENSHOT_DIR = join(import.meta.dirname, '..', '..', 'test-output');

/**
 * Launches Chromium or skips (fails under CI) when it is not installed. The flags keep it from
 * reaching out to the network, which this machine refuses, and from needing a sandbox as root.
 */
export async function launchBrowser(
  t: TestContext,
): Promise<{ browser: Browser; close(): Promise<void> } | null> {
  const exe = peer(t, 'chromium');
  if (!exe) return null;
  const browser = await chromium.launch({
    executablePath: exe,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  return {
    browser,
    async close() {
      await browser.close();
    },
  };
}

export function screenshotPath(name: string): string {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  return join(SCREENSHOT_DIR, `${name}.png`);
}
