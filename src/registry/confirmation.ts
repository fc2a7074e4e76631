/**
 * Confirmation numbers (seed 004, claim 7): year, month-day, hour, the sender address and a random
 * part, concatenated — e.g. `2026112309bank@example.comWetResZx`. The hour is UTC at registration.
 * The random part is 8 characters of [A-Za-z0-9] (≈ 47.6 bits); uniqueness is enforced by the
 * store (unique column), a collision simply draws again.
 */
import { randomInt } from 'node:crypto';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
export const RANDOM_PART_LENGTH = 8;
const PATTERN = /^(\d{4})(\d{2})(\d{2})(\d{2})(.+@.+)([A-Za-z0-9]{8})$/su;
export const MAX_CONFIRMATION_NO_CHARS = 10 + 256 + RANDOM_PART_LENGTH;

export function randomToken(length: number, alphabet = ALPHABET): string {
  let s = '';
  for (let i = 0; i < length; i++) s += alphabet[randomInt(alphabet.length)];
  return s;
}

export function newConfirmationNo(address: string, at: Date): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(at.getUTCFullYear(), 4)}${p(at.getUTCMonth() + 1)}${p(at.getUTCDate())}${p(at.getUTCHours())}${address}${randomToken(RANDOM_PART_LENGTH)}`;
}

export interface ConfirmationNoParts {
  year: number;
  month: number;
  day: number;
  hour: number;
  address: string;
  random: string;
}

/** Splits a confirmation number, or null when it does not have the shape. */
export function parseConfirmationNo(text: string): ConfirmationNoParts | null {
  if (text.length > MAX_CONFIRMATION_NO_CHARS * 2) return null;
  const m = PATTERN.exec(text);
  if (!m) return null;
  const [, y, mo, d, h, address, random] = m as unknown as [
    string,
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  const parts = { year: +y, month: +mo, day: +d, hour: +h, address, random };
  if (parts.month < 1 || parts.month > 12 || parts.day < 1 || parts.day > 31 || parts.hour > 23) return null;
  return parts;
}
