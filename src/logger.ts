import pino from 'pino';

/**
 * One pino logger for the process. Secrets never reach it: the redact list covers the fields where
 * credentials could appear (SMTP AUTH, FTP PASS, registry tokens, private keys).
 */
export type Logger = pino.Logger;

export const REDACT_PATHS = [
  'password',
  '*.password',
  'pass',
  '*.pass',
  'auth',
  '*.auth',
  'token',
  '*.token',
  'key',
  '*.key',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'headers["proxy-authorization"]',
];

export function createLogger(options: { level?: string; destination?: number | string } = {}): Logger {
  const level = options.level ?? process.env.SCANGATE_LOG_LEVEL ?? 'info';
  return pino(
    { level, base: { pid: process.pid }, redact: { paths: REDACT_PATHS, censor: '[redacted]' } },
    pino.destination({ dest: options.destination ?? 2, sync: false }),
  );
}

/** A logger that drops everything, for library use and tests. */
export const silentLogger: Logger = pino({ level: 'silent' });
