/** The registry's mails to address owners (seed 004 steps 1–3): plain text, no tracking, no HTML. */
import type { OutgoingMail } from './mailer.js';

const iso = (ms: number) =>
  new Date(ms)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, ' UTC');

export function confirmationMail(p: {
  address: string;
  account: string;
  code: string;
  link: string;
  expiresAt: number;
}): OutgoingMail {
  return {
    to: p.address,
    subject: 'Confirm your address for the mail registry',
    text: [
      `Someone (the account "${p.account}") asked to register ${p.address} with the anti-phishing mail registry.`,
      '',
      `To confirm that this address is yours, open this link:`,
      '',
      `  ${p.link}`,
      '',
      `or enter the code ${p.code} on the confirmation page.`,
      '',
      `The code works once and expires at ${iso(p.expiresAt)}.`,
      'If you did not ask for this, ignore this mail: nothing is registered without the code.',
    ].join('\n'),
  };
}

export function confirmedMail(address: string): OutgoingMail {
  return {
    to: address,
    subject: 'Your address is registered',
    text: `${address} is now registered with the anti-phishing mail registry. Recipients can check the mail you register.\nIf this was not you, contact the registry operator.`,
  };
}

export function unboundMail(address: string): OutgoingMail {
  return {
    to: address,
    subject: 'Your address was removed from the registry',
    text: `${address} is no longer registered with the anti-phishing mail registry.\nIf this was not you, register it again and contact the registry operator.`,
  };
}

export function reminderMail(p: {
  address: string;
  account: string;
  boundAt: number;
  keys: { id: string; algorithm: string }[];
  messages: number;
  since: number;
  publicUrl: string;
}): OutgoingMail {
  return {
    to: p.address,
    subject: 'What the mail registry holds for your address',
    text: [
      `This is a periodic reminder of what the anti-phishing mail registry holds for ${p.address}.`,
      '',
      `  account:        ${p.account}`,
      `  registered:     ${iso(p.boundAt)}`,
      `  signing keys:   ${p.keys.length ? p.keys.map((k) => `${k.algorithm} ${k.id}`).join(', ') : 'none'}`,
      `  messages registered since ${iso(p.since)}: ${p.messages}`,
      '',
      'If any of this is wrong, change it or remove the address from the account (API: DELETE',
      `/api/v1/addresses/<address>), or contact the registry operator: ${p.publicUrl}/`,
    ].join('\n'),
  };
}
