/** The EICAR test string (68 bytes) and small builders used across tests. */
export const EICAR = Buffer.from(
  'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*',
  'latin1',
);
export const EICAR_NAME = 'Eicar-Signature';

/** A mail with `payload` as a base64 attachment named `filename`. */
export function mailWithAttachment(payload: Buffer, filename = 'invoice.txt'): Buffer {
  const b64 = payload.toString('base64').replace(/.{1,76}/g, '$&\r\n');
  return Buffer.from(
    [
      'From: Billing <billing@bank.example>',
      'To: customer@example.org',
      'Subject: Your invoice',
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="XyZ"',
      '',
      '--XyZ',
      'Content-Type: text/plain; charset=utf-8',
      '',
      'Please find the invoice attached.',
      '--XyZ',
      `Content-Type: application/octet-stream; name="${filename}"`,
      'Content-Transfer-Encoding: base64',
      `Content-Disposition: attachment; filename="${filename}"`,
      '',
      b64,
      '--XyZ--',
      '',
    ].join('\r\n'),
  );
}
