/**
 * The registry's web pages, rendered on the server (no script): the query form where a recipient
 * pastes a mail or its fields, the verdict, and the address-confirmation page the mailed link opens.
 * Forms carry a CSRF token: a random cookie (HttpOnly, SameSite=Strict) and, in the form, its HMAC
 * under a per-process key, compared in constant time (OWASP "signed double-submit cookie").
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { VerifyResult } from './service.js';

export const CSRF_COOKIE = 'sg_csrf';

export class CsrfGuard {
  private readonly key = randomBytes(32);
  constructor(private readonly secureCookie: boolean) {}

  /** The cookie value to keep (existing if well-formed) and the matching form token. */
  issue(existingCookie: string | undefined): { cookie: string; setCookie: string | null; token: string } {
    const cookie =
      existingCookie && /^[A-Za-z0-9_-]{43}$/.test(existingCookie)
        ? existingCookie
        : randomBytes(32).toString('base64url');
    const setCookie =
      cookie === existingCookie
        ? null
        : `${CSRF_COOKIE}=${cookie}; Path=/; HttpOnly; SameSite=Strict${this.secureCookie ? '; Secure' : ''}`;
    return { cookie, setCookie, token: this.mac(cookie) };
  }

  check(cookie: string | undefined, token: unknown): boolean {
    if (!cookie || typeof token !== 'string') return false;
    const want = Buffer.from(this.mac(cookie));
    const got = Buffer.from(token);
    return want.length === got.length && timingSafeEqual(want, got);
  }

  private mac(cookie: string): string {
    return createHmac('sha256', this.key).update(cookie).digest('base64url');
  }
}

export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const STYLE = `
body{font:16px/1.45 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#1d1d1f}
h1{font-size:1.4rem}label{display:block;margin:.6rem 0 .2rem;font-weight:600}
textarea,input[type=text]{width:100%;box-sizing:border-box;font:14px ui-monospace,monospace;padding:.4rem}
textarea{height:14rem}button{margin-top:1rem;font-size:1rem;padding:.5rem 1.2rem}
fieldset{border:1px solid #ccc;margin-top:1rem}.verdict{padding:1rem;border-radius:.4rem;margin:1rem 0;font-size:1.1rem}
.authentic{background:#e3f6e8;border:2px solid #1e8e3e}.tampered,.not-registered{background:#fde7e7;border:2px solid #c5221f}
.unknown-sender{background:#f1f3f4;border:2px solid #80868b}.error{background:#fff4e5;border:2px solid #e37400}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dt{font-weight:600}dd{margin:0;word-break:break-all}
`;

function layout(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>${esc(title)}</title><style>${STYLE}</style></head><body>${body}</body></html>`;
}

const LABEL: Record<VerifyResult['verdict'], string> = {
  authentic: 'Authentic: this mail was registered by its sender and has not been changed.',
  tampered: 'Tampered: this mail was registered, but what you received differs from what was registered.',
  'not-registered':
    'Not registered: this mail claims a registered sender but the registry has no record of it. Treat it as phishing.',
  'unknown-sender':
    'Unknown sender: the sender has not enrolled with this registry, so it cannot vouch either way.',
};

export function queryPage(p: {
  token: string;
  mail?: string;
  result?: (VerifyResult & { from: string; to: string; date: string; signature: string }) | null;
  error?: string;
}): string {
  let outcome = '';
  if (p.error)
    outcome = `<div id="verdict" class="verdict error" role="status"><strong>Cannot check:</strong> ${esc(p.error)}</div>`;
  else if (p.result) {
    const r = p.result;
    outcome = `<div id="verdict" class="verdict ${r.verdict}" role="status" data-verdict="${r.verdict}"><strong>${esc(LABEL[r.verdict])}</strong><br>${esc(r.reason)}</div>
<dl><dt>From</dt><dd>${esc(r.from)}</dd><dt>To</dt><dd>${esc(r.to)}</dd><dt>Date</dt><dd>${esc(r.date)}</dd>
<dt>Confirmation no.</dt><dd>${esc(r.confirmationNo ?? '—')}</dd><dt>Registered at</dt><dd>${esc(r.registeredAt ?? '—')}</dd>
<dt>Signature</dt><dd><code>${esc(r.signature)}</code></dd></dl>`;
  }
  return layout(
    'Check a mail — scangate registry',
    `<h1>Is this mail really from its sender?</h1>
<p>Paste the whole mail (with its headers: in most mail programs "Show original" or "View source"), or give the fields below.</p>
${outcome}
<form method="post" action="/check">
<input type="hidden" name="csrf" value="${esc(p.token)}">
<label for="mail">The mail, headers and body</label>
<textarea id="mail" name="mail" spellcheck="false">${esc(p.mail ?? '')}</textarea>
<fieldset><legend>…or the fields</legend>
<label for="from">Sender</label><input type="text" id="from" name="from">
<label for="to">Recipient</label><input type="text" id="to" name="to">
<label for="date">Date (YYYYMMDD)</label><input type="text" id="date" name="date" inputmode="numeric">
<label for="signature">Signature (128 hex characters, <code>scangate sign</code>)</label><input type="text" id="signature" name="signature">
<label for="confirmationNo">Confirmation number (X-Confirmation-No)</label><input type="text" id="confirmationNo" name="confirmationNo">
</fieldset>
<button type="submit" id="check">Check</button>
</form>`,
  );
}

export function confirmPage(p: {
  token: string;
  ref: string;
  code: string;
  done?: string;
  error?: string;
}): string {
  if (p.done)
    return layout(
      'Address confirmed',
      `<h1>Address confirmed</h1><p id="result" class="verdict authentic">${esc(p.done)} is now registered.</p>`,
    );
  return layout(
    'Confirm your address — scangate registry',
    `<h1>Confirm your address</h1>
${p.error ? `<p id="result" class="verdict error">${esc(p.error)}</p>` : ''}
<form method="post" action="/confirm">
<input type="hidden" name="csrf" value="${esc(p.token)}">
<input type="hidden" name="ref" value="${esc(p.ref)}">
<label for="code">Code from the mail</label><input type="text" id="code" name="code" value="${esc(p.code)}" autocomplete="one-time-code">
<button type="submit" id="confirm">Confirm</button>
</form>`,
  );
}

export function errorPage(status: number, message: string): string {
  return layout(`Error ${status}`, `<h1>${status}</h1><p class="verdict error">${esc(message)}</p>`);
}
