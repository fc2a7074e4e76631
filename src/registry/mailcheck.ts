/**
 * A raw mail → the registry query it stands for: sender, first recipient, date, whether it claims
 * to be registered, its confirmation number, and the signature of its content (mail.ts).
 */
import { invalid } from './errors.js';
import { type MailFacts, mailFacts } from './mail.js';
import type { VerifyQuery } from './service.js';
import { SignatureHasher } from './signature.js';

export interface MailQuery extends VerifyQuery {
  from: string;
  to: string;
  date: string;
  signature: string;
  confirmationNo: string | undefined;
  claimsRegistered: boolean;
}

/** Throws 400 naming the header that is missing. */
export function queryOfMail(raw: Buffer): MailQuery {
  const facts = mailFacts(raw);
  if (!facts.from) throw invalid('mail', 'no sender address in From');
  if (!facts.to) throw invalid('mail', 'no recipient address in To');
  if (!facts.date) throw invalid('mail', 'no usable Date header');
  const signature = new SignatureHasher({ from: facts.from, to: facts.to, date: facts.date })
    .update(facts.contentPrefix)
    .update(raw.subarray(facts.bodyOffset))
    .digest();
  return queryOfFacts({ ...facts, from: facts.from, to: facts.to, date: facts.date }, signature);
}

/** The verify query for a mail whose facts and content signature are known. */
export function queryOfFacts(
  facts: MailFacts & { from: string; to: string; date: string },
  signature: string,
): MailQuery {
  return {
    from: facts.from,
    to: facts.to,
    date: facts.date,
    signature,
    confirmationNo: facts.confirmationNo,
    claimsRegistered: facts.claimsRegistered,
  };
}
