import { randomBytes } from 'node:crypto';

/**
 * The mail both SMTP benchmarks use: ~`kb` KB, a text part and a random (clean) base64 attachment,
 * CRLF line ends, no line starting with a dot. `serialAt` is where 12 bytes can be overwritten (in
 * the attachment's file name) to make each copy unique content. Ends with CRLF, without the DATA
 * terminator.
 */
export function benchMail(kb: number): { template: Buffer; serialAt: number } {
  const raw = randomBytes(Math.floor(((kb * 1024 - 600) * 3) / 4));
  const b64 = raw.toString('base64').replace(/.{1,76}/g, '$&\r\n');
  const template = Buffer.from(
    [
      'From: bench@example.org',
      'To: rcpt@example.net',
      'Subject: scangate smtp bench',
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="bnd"',
      '',
      '--bnd',
      'Content-Type: text/plain; charset=utf-8',
      '',
      'The quarterly figures are attached.',
      '--bnd',
      'Content-Type: application/octet-stream; name="figures.bin"',
      'Content-Transfer-Encoding: base64',
      'Content-Disposition: attachment; filename="figures.bin"',
      '',
      `${b64}--bnd--`,
      '',
    ].join('\r\n'),
  );
  return { template, serialAt: template.indexOf('filename="figures.bin"') + 28 };
}
