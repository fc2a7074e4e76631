/**
 * The anti-phishing mail registry as a running service: store (migrated), mailer, HTTP server,
 * reminder timer. `scangate run` starts it when the config has a `registry` block; tests and the
 * benchmark start it in-process.
 */
import type { Server } from 'node:http';
import type { Config } from '../config/schema.js';
import type { Logger } from '../logger.js';
import { migrateToLatest, openDatabase } from '../store/index.js';
import { parseAddress } from '../util/units.js';
import { createRegistryServer, listen } from './http.js';
import { createMailer, type Mailer } from './mailer.js';
import { RegistryService } from './service.js';
import { type RegistryDatabase, registryMigrations } from './tables.js';

export type RegistryConfig = NonNullable<Config['registry']>;

export interface RunningRegistry {
  readonly service: RegistryService;
  readonly server: Server;
  /** http://host:port of the listener. */
  readonly url: string;
  readonly publicUrl: string;
  close(): Promise<void>;
}

export interface StartRegistryOptions {
  /** Replaces the configured mailer (tests). */
  mailer?: Mailer;
  /** Extra CA certificates (PEM) trusted for the mail relay. */
  mailCa?: string[];
  now?: () => number;
}

/** Longest pause between reminder sweeps; the interval itself is configurable and can be longer. */
const REMINDER_SWEEP_MAX_MS = 3_600_000;

/**
 * The registry's service without its HTTP listener, mailer or reminder timer: for a cluster worker,
 * whose SMTP policies use the database the primary's registry migrated and serves (SQLite in WAL
 * mode and PostgreSQL both take several processes).
 */
export async function openRegistryService(
  config: RegistryConfig,
  dataDir: string,
  logger: Logger,
): Promise<{ service: RegistryService; close(): Promise<void> }> {
  const database = await openDatabase<RegistryDatabase>(config.database, { dataDir });
  const service = new RegistryService(database, {
    mailer: null,
    publicUrl: config.publicUrl?.replace(/\/+$/, '') ?? `http://${config.listen}`,
    confirmTtl: config.confirmTtl,
    confirmAttempts: config.confirmAttempts,
    reminderInterval: config.reminderInterval,
    logger: logger.child({ component: 'registry' }),
  });
  return { service, close: () => database.close() };
}

export async function startRegistry(
  config: RegistryConfig,
  dataDir: string,
  logger: Logger,
  options: StartRegistryOptions = {},
): Promise<RunningRegistry> {
  const log = logger.child({ component: 'registry' });
  const database = await openDatabase<RegistryDatabase>(config.database, { dataDir });
  let mailer: Mailer | null = null;
  let server: Server | null = null;
  try {
    await migrateToLatest(database, 'registry', registryMigrations);
    mailer =
      options.mailer ??
      (config.mail
        ? createMailer({
            smtp: config.mail.smtp,
            from: config.mail.from,
            tls: config.mail.tls,
            user: config.mail.user,
            password: config.mail.password,
            ...(options.mailCa ? { ca: options.mailCa } : {}),
          })
        : null);
    const addr = parseAddress(config.listen);
    if (!('host' in addr)) throw new Error('registry.listen must be host:port');
    const provisional = { publicUrl: config.publicUrl?.replace(/\/+$/, '') ?? '' };
    const service = new RegistryService(database, {
      mailer,
      get publicUrl() {
        return provisional.publicUrl;
      },
      confirmTtl: config.confirmTtl,
      confirmAttempts: config.confirmAttempts,
      reminderInterval: config.reminderInterval,
      logger: log,
      ...(options.now ? { now: options.now } : {}),
    });
    server = createRegistryServer(service, {
      maxRequestSize: config.maxRequestSize,
      rateLimits: config.rateLimits,
      secureCookies: provisional.publicUrl.startsWith('https:'),
      logger: log,
    });
    const bound = await listen(server, addr.host, addr.port);
    const host = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
    const url = `http://${host}:${bound.port}`;
    // With port 0 (tests) the URL is known only now.
    if (!provisional.publicUrl) provisional.publicUrl = url;
    const sweep = setInterval(
      () => {
        service
          .sendDueReminders()
          .then(() => service.purgeConfirmations())
          .catch((e: Error) => log.warn({ err: e.message }, 'registry: reminder sweep failed'));
      },
      Math.min(config.reminderInterval, REMINDER_SWEEP_MAX_MS),
    );
    sweep.unref();
    log.info(
      { url, database: database.url, mail: config.mail ? config.mail.smtp : null },
      'registry listening',
    );
    const running = server;
    return {
      service,
      server: running,
      url,
      publicUrl: provisional.publicUrl,
      async close() {
        clearInterval(sweep);
        running.closeIdleConnections();
        await new Promise<void>((r) => running.close(() => r()));
        mailer?.close();
        await database.close();
      },
    };
  } catch (e) {
    server?.close();
    mailer?.close();
    await database.close();
    throw e;
  }
}

export { canonicalAddress, canonicalDate } from './address.js';
export { canonicalBody } from './canonical.js';
export { RegistryError } from './errors.js';
export { PHISHING_HEADER, registryPolicies } from './gateway-policy.js';
export { makeProof, parsePublicKey } from './keys.js';
export { stampMail } from './mail.js';
export { type MailQuery, queryOfMail } from './mailcheck.js';
export { RegistryService, type Verdict, type VerifyResult } from './service.js';
export { messageSignature, SignatureHasher, streamSignature } from './signature.js';
