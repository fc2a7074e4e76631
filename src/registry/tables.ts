/**
 * Registry tables (migration namespace `registry`). Timestamps are epoch milliseconds; secrets
 * (API tokens, confirmation codes) are stored only as SHA-256 digests, so a copy of the database
 * lets nobody act as an account or confirm an address.
 */
import type { Generated } from 'kysely';
import { addIdColumn, type MigrationSet } from '../store/index.js';

export interface AccountTable {
  id: Generated<number>;
  name: string;
  token_hash: string;
  created_at: number;
}

/** A pending proof of address ownership: one mailed code, single use. */
export interface ConfirmationTable {
  id: Generated<number>;
  /** Public handle in the link, so the code itself never needs to be looked up by value. */
  ref: string;
  address: string;
  account_id: number;
  code_hash: string;
  expires_at: number;
  attempts: number;
  used_at: number | null;
  created_at: number;
}

/** An address whose ownership an account proved; at most one account per address. */
export interface BindingTable {
  address: string;
  account_id: number;
  bound_at: number;
  reminded_at: number;
}

export interface KeyTable {
  /** SHA-256 of the SubjectPublicKeyInfo DER, hex, first 32 characters. */
  id: string;
  account_id: number;
  algorithm: 'ed25519' | 'rsa';
  spki: string;
  created_at: number;
  revoked_at: number | null;
}

export interface MessageTable {
  id: Generated<number>;
  confirmation_no: string;
  account_id: number;
  sender: string;
  recipient: string;
  date: string;
  signature: string;
  key_id: string;
  proof: string;
  registered_at: number;
}

export interface RegistryDatabase {
  reg_accounts: AccountTable;
  reg_confirmations: ConfirmationTable;
  reg_bindings: BindingTable;
  reg_keys: KeyTable;
  reg_messages: MessageTable;
}

export const registryMigrations: MigrationSet = {
  '001_init': {
    async up(db, kind) {
      await addIdColumn(db.schema.createTable('reg_accounts'), kind)
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('token_hash', 'text', (c) => c.notNull().unique())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await addIdColumn(db.schema.createTable('reg_confirmations'), kind)
        .addColumn('ref', 'text', (c) => c.notNull().unique())
        .addColumn('address', 'text', (c) => c.notNull())
        .addColumn('account_id', 'bigint', (c) =>
          c.notNull().references('reg_accounts.id').onDelete('cascade'),
        )
        .addColumn('code_hash', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('used_at', 'bigint')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('reg_bindings')
        .addColumn('address', 'text', (c) => c.primaryKey())
        .addColumn('account_id', 'bigint', (c) =>
          c.notNull().references('reg_accounts.id').onDelete('cascade'),
        )
        .addColumn('bound_at', 'bigint', (c) => c.notNull())
        .addColumn('reminded_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('reg_bindings_account').on('reg_bindings').column('account_id').execute();
      await db.schema
        .createTable('reg_keys')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('account_id', 'bigint', (c) =>
          c.notNull().references('reg_accounts.id').onDelete('cascade'),
        )
        .addColumn('algorithm', 'text', (c) => c.notNull())
        .addColumn('spki', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('revoked_at', 'bigint')
        .execute();
      await db.schema.createIndex('reg_keys_account').on('reg_keys').column('account_id').execute();
      await addIdColumn(db.schema.createTable('reg_messages'), kind)
        .addColumn('confirmation_no', 'text', (c) => c.notNull().unique())
        .addColumn('account_id', 'bigint', (c) =>
          c.notNull().references('reg_accounts.id').onDelete('cascade'),
        )
        .addColumn('sender', 'text', (c) => c.notNull())
        .addColumn('recipient', 'text', (c) => c.notNull())
        .addColumn('date', 'text', (c) => c.notNull())
        .addColumn('signature', 'text', (c) => c.notNull())
        .addColumn('key_id', 'text', (c) => c.notNull())
        .addColumn('proof', 'text', (c) => c.notNull())
        .addColumn('registered_at', 'bigint', (c) => c.notNull())
        .addUniqueConstraint('reg_messages_unique', ['sender', 'recipient', 'date', 'signature'])
        .execute();
      await db.schema.createIndex('reg_messages_signature').on('reg_messages').column('signature').execute();
    },
  },
};
