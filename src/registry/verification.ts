/**
 * What the registry says of one mail (issue 7): authentic, tampered, not registered, or a sender
 * it cannot vouch for. A read-only question of the store, answered for the HTTP API, the web page,
 * the CLI and the SMTP gateway policy alike.
 */
import type { Kysely } from 'kysely';
import { canonicalAddress, canonicalDate } from './address.js';
import { invalid } from './errors.js';
import { canonicalSignature } from './signature.js';
import type { RegistryDatabase } from './tables.js';

type RegistryDb = Kysely<RegistryDatabase>;

export type Verdict = 'authentic' | 'tampered' | 'not-registered' | 'unknown-sender';

export interface VerifyQuery {
  from: unknown;
  to: unknown;
  date: unknown;
  signature: unknown;
  confirmationNo?: unknown;
  claimsRegistered?: unknown;
}

export interface VerifyResult {
  verdict: Verdict;
  /** Whether the sender address is enrolled (bound to an account). */
  enrolled: boolean;
  confirmationNo?: string;
  registeredAt?: string;
  /** One sentence for people: why this verdict. */
  reason: string;
}

export async function verifyMessage(db: RegistryDb, q: VerifyQuery): Promise<VerifyResult> {
  const from = canonicalAddress(q.from, 'from');
  const to = canonicalAddress(q.to, 'to');
  const date = canonicalDate(q.date, 'date');
  const signature = canonicalSignature(q.signature);
  let confirmationNo: string | undefined;
  if (q.confirmationNo !== undefined && q.confirmationNo !== null && q.confirmationNo !== '') {
    if (typeof q.confirmationNo !== 'string' || q.confirmationNo.length > 600)
      throw invalid('confirmationNo', 'too long');
    confirmationNo = q.confirmationNo.trim().normalize('NFC');
  }
  const claims = q.claimsRegistered === true || confirmationNo !== undefined;
  const enrolled = (await bindingOf(db, from)) !== undefined;
  if (confirmationNo) {
    const rec = await db
      .selectFrom('reg_messages')
      .select(['sender', 'recipient', 'date', 'signature', 'registered_at'])
      .where('confirmation_no', '=', confirmationNo)
      .executeTakeFirst();
    if (!rec)
      return {
        verdict: 'not-registered',
        enrolled,
        confirmationNo,
        reason: 'The mail carries a confirmation number the registry never issued: likely phishing.',
      };
    const registeredAt = new Date(rec.registered_at).toISOString();
    const differs = [
      rec.sender !== from && 'sender',
      rec.recipient !== to && 'recipient',
      rec.date !== date && 'date',
      rec.signature !== signature && 'content',
    ].filter(Boolean);
    if (differs.length === 0)
      return {
        verdict: 'authentic',
        enrolled,
        confirmationNo,
        registeredAt,
        reason: 'Registered, and the mail is the one that was registered.',
      };
    return {
      verdict: 'tampered',
      enrolled,
      confirmationNo,
      registeredAt,
      reason: `Registered, but the ${differs.join(', ')} differ${differs.length === 1 ? 's' : ''} from what was registered.`,
    };
  }
  const rec = await findMessage(db, from, to, date, signature);
  if (rec)
    return {
      verdict: 'authentic',
      enrolled,
      confirmationNo: rec.confirmation_no,
      registeredAt: new Date(rec.registered_at).toISOString(),
      reason: 'Registered, and the mail is the one that was registered.',
    };
  if (enrolled || claims)
    return {
      verdict: 'not-registered',
      enrolled,
      reason: enrolled
        ? 'The sender is enrolled, but this mail was never registered: likely phishing.'
        : 'The mail claims to be registered, but it is not: likely phishing.',
    };
  return {
    verdict: 'unknown-sender',
    enrolled,
    reason: 'The sender has not enrolled with this registry; it cannot vouch either way.',
  };
}

/** The account an address (canonical) is bound to, if any. */
export function bindingOf(db: RegistryDb, address: string) {
  return db
    .selectFrom('reg_bindings')
    .select(['account_id'])
    .where('address', '=', address)
    .executeTakeFirst();
}

/** The registration of exactly this mail, if any. */
export function findMessage(db: RegistryDb, from: string, to: string, date: string, signature: string) {
  return db
    .selectFrom('reg_messages')
    .select(['confirmation_no', 'registered_at'])
    .where('sender', '=', from)
    .where('recipient', '=', to)
    .where('date', '=', date)
    .where('signature', '=', signature)
    .executeTakeFirst();
}
