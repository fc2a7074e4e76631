/**
 * File-type gating for target types (ExtendedSignatures.md): we recognise the types whose identity
 * is in the first bytes. 1 PE ("MZ": like ClamAV's CL_TYPE_MSEXE magic, which clamscan applies to an
 * "MZ" file without a valid PE header too — checked by the differential test), 6 ELF, 9 Mach-O (thin,
 * both endians), 10 PDF ("%PDF-" in the first 1024 bytes). Others never match.
 */
export function targetMatches(target: number, head: Buffer): boolean {
  switch (target) {
    case 0:
      return true;
    case 1:
      return head.length >= 2 && head[0] === 0x4d && head[1] === 0x5a;
    case 6:
      return head.length >= 4 && head.readUInt32BE(0) === 0x7f454c46;
    case 9: {
      if (head.length < 4) return false;
      const m = head.readUInt32BE(0);
      return m === 0xfeedface || m === 0xfeedfacf || m === 0xcefaedfe || m === 0xcffaedfe;
    }
    case 10:
      return head.subarray(0, 1024).includes('%PDF-');
    default:
      return false;
  }
}
