/**
 * What the registry reads from, and writes into, an RFC 5322 message: sender, first recipient,
 * the date as the sender wrote it, the subject, the body, and the X-Registered /
 * X-Confirmation-No fields. The signature content of a mail is
 *
 *     Subject: <subject, RFC 2047 words decoded, white space folded> LF LF <body>
 *
 * so a changed subject is tampering too, while re-encoded words or refolded header lines are not.
 */
import libmime from 'libmime';
import addressparser from 'nodemailer/lib/addressparser';
import { invalid } from './errors.js';

export const MAX_HEADER_BYTES = 256 * 1024;
export const REGISTERED_HEADER = 'X-Registered';
export const CONFIRMATION_HEADER = 'X-Confirmation-No';

export interface HeaderField {
  /** Lower-case name. */
  name: string;
  /** Unfolded value, leading white space removed. */
  value: string;
}

export interface ParsedMail {
  fields: HeaderField[];
  /** Offset of the body in the raw message (after the empty line). */
  bodyOffset: number;
  /** Line ending the header uses, kept when stamping. */
  eol: '\r\n' | '\n';
}

/** Splits the header block; throws 400 when there is none or it is unreasonably long. */
export function parseMail(raw: Buffer): ParsedMail {
  const limit = Math.min(raw.length, MAX_HEADER_BYTES);
  let end = -1;
  let bodyOffset = raw.length;
  for (let i = 0; i < limit; i++) {
    if (raw[i] !== 0x0a) continue;
    if (raw[i + 1] === 0x0a) {
      end = i + 1;
      bodyOffset = i + 2;
      break;
    }
    if (raw[i + 1] === 0x0d && raw[i + 2] === 0x0a) {
      end = i + 1;
      bodyOffset = i + 3;
      break;
    }
  }
  if (end < 0) {
    if (raw.length > MAX_HEADER_BYTES) throw invalid('mail', `header longer than ${MAX_HEADER_BYTES} bytes`);
    end = raw.length; // headers only, no body
  }
  const firstLf = raw.indexOf(0x0a);
  const eol = firstLf > 0 && raw[firstLf - 1] === 0x0d ? '\r\n' : '\n';
  const text = raw.subarray(0, end).toString('utf8'); // RFC 6532 allows UTF-8 header values
  const fields: HeaderField[] = [];
  for (const line of text.split(/\r?\n/)) {
    if (line === '') continue;
    if ((line[0] === ' ' || line[0] === '\t') && fields.length) {
      (fields[fields.length - 1] as HeaderField).value += line;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) {
      if (fields.length === 0 && line.startsWith('From ')) continue; // mbox "From " line
      throw invalid('mail', 'malformed header line');
    }
    fields.push({ name: line.slice(0, colon).trim().toLowerCase(), value: line.slice(colon + 1).trim() });
  }
  if (fields.length === 0) throw invalid('mail', 'no header fields');
  return { fields, bodyOffset, eol };
}

export function header(mail: ParsedMail, name: string): string | undefined {
  return mail.fields.find((f) => f.name === name)?.value;
}

/** First addr-spec in an address-list header (From, To), or undefined. */
export function firstAddress(value: string | undefined): string | undefined {
  if (!value) return undefined;
  const list = addressparser(value, { flatten: true });
  return list.find((a) => a.address)?.address;
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];

/**
 * YYYYMMDD of a Date header as the sender wrote it (its own time zone): the signature date must not
 * depend on where the verifier is. Two-digit years per RFC 5322 §4.3.
 */
export function dateOfHeader(value: string | undefined): string | undefined {
  if (!value) return undefined;
  const m = /(?:^|[\s,])(\d{1,2})\s+([A-Za-z]{3})[a-z]*\s+(\d{2,4})\b/.exec(value);
  if (!m) return undefined;
  const month = MONTHS.indexOf((m[2] as string).toLowerCase()) + 1;
  if (month === 0) return undefined;
  let year = Number(m[3]);
  if ((m[3] as string).length === 2) year += year < 50 ? 2000 : 1900;
  else if ((m[3] as string).length === 3) year += 1900;
  return `${String(year).padStart(4, '0')}${String(month).padStart(2, '0')}${String(Number(m[1])).padStart(2, '0')}`;
}

export function decodedSubject(mail: ParsedMail): string {
  const raw = header(mail, 'subject') ?? '';
  let decoded: string;
  try {
    decoded = libmime.decodeWords(raw);
  } catch {
    decoded = raw;
  }
  return decoded.replace(/[ \t\r\n]+/g, ' ').trim();
}

/** The fields the registry needs from a mail, as the sender's or the recipient's tools see them. */
export interface MailFacts {
  from: string | undefined;
  to: string | undefined;
  date: string | undefined;
  claimsRegistered: boolean;
  confirmationNo: string | undefined;
  /** Prefix of the signature content (the subject part); the body follows it. */
  contentPrefix: string;
  bodyOffset: number;
}

export function mailFacts(raw: Buffer): MailFacts {
  const mail = parseMail(raw);
  return {
    from: firstAddress(header(mail, 'from')),
    to: firstAddress(header(mail, 'to')),
    date: dateOfHeader(header(mail, 'date')),
    claimsRegistered: /^yes$/i.test(header(mail, 'x-registered') ?? ''),
    confirmationNo: header(mail, 'x-confirmation-no')?.replace(/\s+/g, ''),
    contentPrefix: `Subject: ${decodedSubject(mail)}\n\n`,
    bodyOffset: mail.bodyOffset,
  };
}

/**
 * The message with `X-Registered: Yes` and `X-Confirmation-No:` at the top of its header (any
 * previous ones removed, so stamping twice leaves one pair), in the header's own line ending.
 */
export function stampMail(raw: Buffer, confirmationNo: string): Buffer {
  const mail = parseMail(raw);
  const head = raw.subarray(0, mail.bodyOffset).toString('utf8');
  const lines = head.split(/(?<=\n)/);
  const kept: string[] = [];
  let dropping = false;
  for (const line of lines) {
    const continuation = line[0] === ' ' || line[0] === '\t';
    if (!continuation) dropping = /^(x-registered|x-confirmation-no)\s*:/i.test(line);
    if (!dropping) kept.push(line);
  }
  const stamp = `${REGISTERED_HEADER}: Yes${mail.eol}${CONFIRMATION_HEADER}: ${confirmationNo}${mail.eol}`;
  return Buffer.concat([Buffer.from(stamp + kept.join(''), 'utf8'), raw.subarray(mail.bodyOffset)]);
}
