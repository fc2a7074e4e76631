import { ScangateError } from '../errors.js';

/**
 * A database that cannot be opened or migrated. Codes: ERR_STORE_URL (unusable database URL),
 * ERR_STORE_MIGRATION (a migration failed; the message names it), ERR_STORE_OPEN (driver refused).
 * Messages never carry a password: URLs are redacted before they reach one.
 */
export class StoreError extends ScangateError {}
