/**
 * Periodic reminders: the owner of an address hears regularly what is registered under it and with
 * which keys, so a binding made by someone else, or a key nobody remembers adding, does not go unnoticed.
 */
import type { Kysely } from 'kysely';
import type { Logger } from '../logger.js';
import type { Mailer } from './mailer.js';
import { reminderMail } from './messages.js';
import type { RegistryDatabase } from './tables.js';

/** Bindings reminded per run; the rest wait for the next run, oldest first. */
const REMINDER_BATCH = 500;

export interface ReminderOptions {
  now: number;
  reminderInterval: number;
  publicUrl: string;
  logger: Logger;
}

/** Mails every binding not reminded for `reminderInterval` what is registered under it; returns how many. */
export async function sendDueReminders(
  db: Kysely<RegistryDatabase>,
  mailer: Mailer,
  options: ReminderOptions,
): Promise<number> {
  const { now, reminderInterval, publicUrl, logger } = options;
  const due = await db
    .selectFrom('reg_bindings')
    .innerJoin('reg_accounts', 'reg_accounts.id', 'reg_bindings.account_id')
    .select([
      'reg_bindings.address',
      'reg_bindings.account_id',
      'reg_bindings.reminded_at',
      'reg_bindings.bound_at',
      'reg_accounts.name',
    ])
    .where('reg_bindings.reminded_at', '<=', now - reminderInterval)
    .orderBy('reg_bindings.reminded_at')
    .limit(REMINDER_BATCH)
    .execute();
  let sent = 0;
  for (const b of due) {
    const keys = await db
      .selectFrom('reg_keys')
      .select(['id', 'algorithm'])
      .where('account_id', '=', b.account_id)
      .where('revoked_at', 'is', null)
      .execute();
    const count = await db
      .selectFrom('reg_messages')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('sender', '=', b.address)
      .where('registered_at', '>', b.reminded_at)
      .executeTakeFirstOrThrow();
    try {
      await mailer.send(
        reminderMail({
          address: b.address,
          account: b.name,
          boundAt: b.bound_at,
          keys,
          messages: Number(count.n),
          since: b.reminded_at,
          publicUrl,
        }),
      );
    } catch (e) {
      logger.warn({ err: (e as Error).message }, 'registry: reminder not sent');
      continue;
    }
    await db.updateTable('reg_bindings').set({ reminded_at: now }).where('address', '=', b.address).execute();
    sent++;
  }
  return sent;
}
