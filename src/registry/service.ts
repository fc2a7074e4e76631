/**
 * The registry's domain operations on the store: accounts and their tokens, proof of address
 * ownership by mailed code, keys, message registration, verification, reminders. Transport-free:
 * the HTTP API, the web page, the CLI's in-process uses and the SMTP gateway policy all call this.
 * Every input is validated here (RegistryError with the HTTP status to answer), every SQL value is
 * bound by Kysely, and secrets are compared as SHA-256 digests in constant time.
 */
import { createHash, type KeyObject, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Logger } from '../logger.js';
import type { Database } from '../store/index.js';
import { canonicalAddress, canonicalDate } from './address.js';
import { newConfirmationNo, randomToken } from './confirmation.js';
import { invalid, RegistryError } from './errors.js';
import { decodeBase64Strict, parsePublicKey, publicKeyFromStored, verifyProof } from './keys.js';
import type { Mailer } from './mailer.js';
import { confirmationMail, confirmedMail, unboundMail } from './messages.js';
import { sendDueReminders } from './reminders.js';
import { canonicalSignature } from './signature.js';
import type { RegistryDatabase } from './tables.js';
import {
  bindingOf,
  findMessage,
  type VerifyQuery,
  type VerifyResult,
  verifyMessage,
} from './verification.js';

export type { Verdict, VerifyQuery, VerifyResult } from './verification.js';

export interface RegistryServiceOptions {
  mailer: Mailer | null;
  /** Base URL of the web page, for links in mail (no trailing slash). */
  publicUrl: string;
  confirmTtl: number;
  confirmAttempts: number;
  reminderInterval: number;
  logger: Logger;
  now?: () => number;
}

const CODE_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789'; // no 0/O, 1/I: codes are typed by people
const CODE_LENGTH = 10;
const MAX_PROOF_BYTES = 1024;
const MAX_NAME_CHARS = 200;
const KEY_CACHE = 4096;
const MAX_PENDING_PER_ADDRESS = 3;
/** Spent and expired confirmations are kept this long (a replay in that time is a clear 409). */
const CONFIRMATION_RETENTION_MS = 7 * 86_400_000;

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');

/** Constant-time equality of a presented secret with a stored SHA-256 hex digest. */
function secretMatches(presented: string, storedHex: string): boolean {
  const a = createHash('sha256').update(presented, 'utf8').digest();
  const b = Buffer.from(storedHex, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

export function isUniqueViolation(e: unknown): boolean {
  const code = (e as { code?: string }).code;
  return code === '23505' || code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

export class RegistryService {
  private readonly db;
  private readonly now: () => number;
  constructor(
    readonly database: Database<RegistryDatabase>,
    private readonly options: RegistryServiceOptions,
  ) {
    this.db = database.db;
    this.now = options.now ?? Date.now;
  }

  // ---- accounts ----

  async createAccount(name: unknown): Promise<{ accountId: number; token: string }> {
    if (typeof name !== 'string' || name.trim() === '' || [...name].length > MAX_NAME_CHARS)
      throw invalid('name', `expected 1–${MAX_NAME_CHARS} characters`);
    const token = `sgr_${randomBytes(32).toString('base64url')}`;
    const row = await this.db
      .insertInto('reg_accounts')
      .values({ name: name.trim().normalize('NFC'), token_hash: sha256(token), created_at: this.now() })
      .returning('id')
      .executeTakeFirstOrThrow();
    return { accountId: Number(row.id), token };
  }

  /** The account a bearer token belongs to, or null. The lookup is by digest of a 256-bit secret. */
  async authenticate(token: string): Promise<{ id: number; name: string } | null> {
    if (!/^sgr_[A-Za-z0-9_-]{43}$/.test(token)) return null;
    const row = await this.db
      .selectFrom('reg_accounts')
      .select(['id', 'name', 'token_hash'])
      .where('token_hash', '=', sha256(token))
      .executeTakeFirst();
    return row && secretMatches(token, row.token_hash) ? { id: Number(row.id), name: row.name } : null;
  }

  // ---- addresses ----

  /** Starts proving ownership: mails a single-use code and link to the address. */
  async requestAddress(accountId: number, address: unknown): Promise<{ ref: string; expiresAt: string }> {
    const addr = canonicalAddress(address);
    if (!this.options.mailer)
      throw new RegistryError('ERR_REGISTRY_NO_MAIL', 'this registry has no mail relay configured', 503);
    const bound = await bindingOf(this.db, addr);
    if (bound?.account_id === accountId)
      throw new RegistryError(
        'ERR_REGISTRY_CONFLICT',
        `${addr} is already bound to this account`,
        409,
        'address',
      );
    const now = this.now();
    // Per address as well as per client: many clients must not turn the registry into a mail bomb.
    const pending = await this.db
      .selectFrom('reg_confirmations')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('address', '=', addr)
      .where('used_at', 'is', null)
      .where('expires_at', '>', now)
      .executeTakeFirstOrThrow();
    if (Number(pending.n) >= MAX_PENDING_PER_ADDRESS)
      throw new RegistryError(
        'ERR_REGISTRY_RATE',
        `${addr} already has confirmation mails waiting; use one of them`,
        429,
        'address',
      );
    const account = await this.db
      .selectFrom('reg_accounts')
      .select('name')
      .where('id', '=', accountId)
      .executeTakeFirstOrThrow();
    const code = randomToken(CODE_LENGTH, CODE_ALPHABET);
    const ref = randomToken(22);
    const expiresAt = now + this.options.confirmTtl;
    await this.db
      .insertInto('reg_confirmations')
      .values({
        ref,
        address: addr,
        account_id: accountId,
        code_hash: sha256(code),
        expires_at: expiresAt,
        attempts: 0,
        used_at: null,
        created_at: now,
      })
      .execute();
    const link = `${this.options.publicUrl}/confirm?ref=${encodeURIComponent(ref)}&code=${encodeURIComponent(code)}`;
    try {
      await this.options.mailer.send(
        confirmationMail({ address: addr, account: account.name, code, link, expiresAt }),
      );
    } catch (e) {
      await this.db.deleteFrom('reg_confirmations').where('ref', '=', ref).execute();
      this.options.logger.warn({ err: (e as Error).message }, 'registry: confirmation mail not sent');
      throw new RegistryError(
        'ERR_REGISTRY_MAIL',
        'the confirmation mail could not be sent; try again later',
        503,
      );
    }
    return { ref, expiresAt: new Date(expiresAt).toISOString() };
  }

  /**
   * Checks a mailed code. Wrong codes count against the confirmation (then it is spent); a used code
   * is a replay (409); on success the address is bound to the account that asked, replacing any
   * earlier binding (the mailbox owner decides: this is how an address changes account).
   */
  async confirmAddress(ref: unknown, code: unknown): Promise<{ address: string; accountId: number }> {
    if (typeof ref !== 'string' || !/^[A-Za-z0-9]{22}$/.test(ref))
      throw invalid('ref', 'unknown confirmation');
    if (typeof code !== 'string' || code.length === 0 || code.length > 64)
      throw invalid('code', 'expected the code from the mail');
    const row = await this.db
      .selectFrom('reg_confirmations')
      .selectAll()
      .where('ref', '=', ref)
      .executeTakeFirst();
    if (!row) throw invalid('ref', 'unknown confirmation');
    if (row.used_at !== null)
      throw new RegistryError('ERR_REGISTRY_REPLAY', 'this confirmation code was already used', 409, 'code');
    const now = this.now();
    if (row.expires_at <= now)
      throw new RegistryError(
        'ERR_REGISTRY_EXPIRED',
        'this confirmation code has expired; ask for a new one',
        400,
        'code',
      );
    if (row.attempts >= this.options.confirmAttempts)
      throw new RegistryError(
        'ERR_REGISTRY_ATTEMPTS',
        'too many wrong codes; ask for a new one',
        400,
        'code',
      );
    if (!secretMatches(code.trim().toUpperCase(), row.code_hash)) {
      await this.db
        .updateTable('reg_confirmations')
        .set((eb) => ({ attempts: eb('attempts', '+', 1) }))
        .where('id', '=', row.id)
        .execute();
      throw new RegistryError('ERR_REGISTRY_CODE', 'wrong confirmation code', 400, 'code');
    }
    await this.db.transaction().execute(async (tx) => {
      // Claim the code atomically: of two concurrent confirmations only one updates the row.
      const claimed = await tx
        .updateTable('reg_confirmations')
        .set({ used_at: now })
        .where('id', '=', row.id)
        .where('used_at', 'is', null)
        .executeTakeFirst();
      if (Number(claimed.numUpdatedRows) !== 1)
        throw new RegistryError(
          'ERR_REGISTRY_REPLAY',
          'this confirmation code was already used',
          409,
          'code',
        );
      await tx.deleteFrom('reg_bindings').where('address', '=', row.address).execute();
      await tx
        .insertInto('reg_bindings')
        .values({ address: row.address, account_id: row.account_id, bound_at: now, reminded_at: now })
        .execute();
    });
    this.notify(confirmedMail(row.address));
    return { address: row.address, accountId: Number(row.account_id) };
  }

  async unbindAddress(accountId: number, address: unknown): Promise<void> {
    const addr = canonicalAddress(address);
    const r = await this.db
      .deleteFrom('reg_bindings')
      .where('address', '=', addr)
      .where('account_id', '=', accountId)
      .executeTakeFirst();
    if (Number(r.numDeletedRows) !== 1)
      throw new RegistryError(
        'ERR_REGISTRY_NOT_FOUND',
        `${addr} is not bound to this account`,
        404,
        'address',
      );
    this.notify(unboundMail(addr));
  }

  async listAddresses(accountId: number): Promise<{ address: string; boundAt: string }[]> {
    const rows = await this.db
      .selectFrom('reg_bindings')
      .select(['address', 'bound_at'])
      .where('account_id', '=', accountId)
      .orderBy('address')
      .execute();
    return rows.map((r) => ({ address: r.address, boundAt: new Date(r.bound_at).toISOString() }));
  }

  /** Whether `address` (canonical) is bound to this account. */
  async ownsAddress(accountId: number, address: string): Promise<boolean> {
    return (await bindingOf(this.db, address))?.account_id === accountId;
  }

  async isEnrolled(address: string): Promise<boolean> {
    return (await bindingOf(this.db, address)) !== undefined;
  }

  // ---- keys ----

  async addKey(accountId: number, publicKey: unknown): Promise<{ id: string; algorithm: string }> {
    const key = parsePublicKey(publicKey);
    try {
      await this.db
        .insertInto('reg_keys')
        .values({
          id: key.id,
          account_id: accountId,
          algorithm: key.algorithm,
          spki: key.spki,
          created_at: this.now(),
          revoked_at: null,
        })
        .execute();
    } catch (e) {
      if (isUniqueViolation(e))
        throw new RegistryError('ERR_REGISTRY_CONFLICT', 'this key is already registered', 409, 'publicKey');
      throw e;
    }
    return { id: key.id, algorithm: key.algorithm };
  }

  async revokeKey(accountId: number, id: unknown): Promise<void> {
    if (typeof id !== 'string' || !/^[0-9a-f]{32}$/.test(id)) throw invalid('id', 'expected a key id');
    const r = await this.db
      .updateTable('reg_keys')
      .set({ revoked_at: this.now() })
      .where('id', '=', id)
      .where('account_id', '=', accountId)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    if (Number(r.numUpdatedRows) !== 1)
      throw new RegistryError('ERR_REGISTRY_NOT_FOUND', 'no such active key on this account', 404, 'id');
  }

  // ---- messages ----

  async registerMessage(
    accountId: number,
    input: { from: unknown; to: unknown; date: unknown; signature: unknown; proof: unknown; keyId?: unknown },
  ): Promise<{ confirmationNo: string; registeredAt: string }> {
    const from = canonicalAddress(input.from, 'from');
    const to = canonicalAddress(input.to, 'to');
    const date = canonicalDate(input.date, 'date');
    const signature = canonicalSignature(input.signature);
    if (typeof input.proof !== 'string') throw invalid('proof', 'expected base64');
    const proof = decodeBase64Strict(input.proof, 'proof');
    if (proof.length > MAX_PROOF_BYTES) throw invalid('proof', 'too long');
    if (input.keyId !== undefined && (typeof input.keyId !== 'string' || !/^[0-9a-f]{32}$/.test(input.keyId)))
      throw invalid('keyId', 'expected a key id');
    const owner = await bindingOf(this.db, from);
    if (owner?.account_id !== accountId)
      throw new RegistryError('ERR_REGISTRY_FORBIDDEN', `${from} is not bound to this account`, 403, 'from');
    let keys = this.db
      .selectFrom('reg_keys')
      .select(['id', 'spki'])
      .where('account_id', '=', accountId)
      .where('revoked_at', 'is', null);
    if (typeof input.keyId === 'string') keys = keys.where('id', '=', input.keyId);
    const key = (await keys.execute()).find((k) =>
      verifyProof(this.keyObject(k.id, k.spki), signature, proof),
    );
    if (!key)
      throw new RegistryError(
        'ERR_REGISTRY_PROOF',
        'proof does not verify with an active key of this account',
        400,
        'proof',
      );
    const existing = await findMessage(this.db, from, to, date, signature);
    if (existing) throw conflictRegistered(existing.confirmation_no);
    for (let attempt = 0; ; attempt++) {
      const now = this.now();
      const confirmationNo = newConfirmationNo(from, new Date(now));
      try {
        await this.db
          .insertInto('reg_messages')
          .values({
            confirmation_no: confirmationNo,
            account_id: accountId,
            sender: from,
            recipient: to,
            date,
            signature,
            key_id: key.id,
            proof: proof.toString('base64'),
            registered_at: now,
          })
          .execute();
        return { confirmationNo, registeredAt: new Date(now).toISOString() };
      } catch (e) {
        if (!isUniqueViolation(e) || attempt >= 3) throw e;
        const raced = await findMessage(this.db, from, to, date, signature);
        if (raced) throw conflictRegistered(raced.confirmation_no);
        // else: the random part collided with another message's; draw again
      }
    }
  }

  /** Parsed public keys by id (a key's bytes never change under its id, which is their digest). */
  private readonly keyObjects = new Map<string, KeyObject>();
  private keyObject(id: string, spki: string): KeyObject {
    let k = this.keyObjects.get(id);
    if (!k) {
      k = publicKeyFromStored(spki);
      if (this.keyObjects.size >= KEY_CACHE)
        this.keyObjects.delete(this.keyObjects.keys().next().value as string);
      this.keyObjects.set(id, k);
    }
    return k;
  }

  // ---- verification ----

  verify(q: VerifyQuery): Promise<VerifyResult> {
    return verifyMessage(this.db, q);
  }

  // ---- reminders ----

  /** Mails every binding not reminded for `reminderInterval` what is registered under it. */
  sendDueReminders(): Promise<number> {
    const { mailer, reminderInterval, publicUrl, logger } = this.options;
    if (!mailer) return Promise.resolve(0);
    return sendDueReminders(this.db, mailer, { reminderInterval, publicUrl, logger, now: this.now() });
  }

  /** Deletes confirmations expired for longer than the retention; returns how many. */
  async purgeConfirmations(): Promise<number> {
    const r = await this.db
      .deleteFrom('reg_confirmations')
      .where('expires_at', '<', this.now() - CONFIRMATION_RETENTION_MS)
      .executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  /** Best-effort notice mail: the operation it reports has already happened. */
  private notify(mail: Parameters<Mailer['send']>[0]): void {
    this.options.mailer
      ?.send(mail)
      .catch((e: Error) => this.options.logger.warn({ err: e.message }, 'registry: notice mail not sent'));
  }
}

function conflictRegistered(confirmationNo: string): RegistryError {
  return new RegistryError('ERR_REGISTRY_DUPLICATE', 'this message is already registered', 409, 'signature', {
    confirmationNo,
  });
}
