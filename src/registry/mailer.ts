/**
 * Outgoing registry mail (confirmation codes, reminders, notices) through the configured SMTP relay
 * with nodemailer. The relay's certificate is verified like every upstream's.
 */
import nodemailer from 'nodemailer';
import { parseAddress } from '../util/units.js';

export interface OutgoingMail {
  to: string;
  subject: string;
  text: string;
}

export interface Mailer {
  send(mail: OutgoingMail): Promise<void>;
  close(): void;
}

export interface MailerConfig {
  smtp: string;
  from: string;
  /** opportunistic: STARTTLS when offered; require: refuse to send without it; implicit: SMTPS; none. */
  tls: 'opportunistic' | 'require' | 'implicit' | 'none';
  user: string | null;
  password: string | null;
  /** Extra CA certificates (PEM text) trusted for the relay (tests, private relays). */
  ca?: string[];
}

export function createMailer(config: MailerConfig): Mailer {
  const addr = parseAddress(config.smtp);
  if (!('host' in addr)) throw new Error('registry.mail.smtp must be host:port');
  const transport = nodemailer.createTransport({
    host: addr.host,
    port: addr.port,
    secure: config.tls === 'implicit',
    ignoreTLS: config.tls === 'none',
    requireTLS: config.tls === 'require',
    ...(config.user ? { auth: { user: config.user, pass: config.password ?? '' } } : {}),
    tls: { rejectUnauthorized: true, ...(config.ca?.length ? { ca: config.ca } : {}) },
    connectionTimeout: 30_000,
    greetingTimeout: 30_000,
    socketTimeout: 60_000,
    logger: false,
  });
  return {
    async send(mail) {
      await transport.sendMail({ from: config.from, to: mail.to, subject: mail.subject, text: mail.text });
    },
    close() {
      transport.close();
    },
  };
}
