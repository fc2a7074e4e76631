/**
 * File-type gating for target types (ExtendedSignatures.md): we recognise the types whose identity
 * is in the first bytes. 1 PE ("MZ" + "PE\0\0" at e_lfanew), 6 ELF, 9 Mach-O (thin, both endians),
 * 10 PDF ("%PDF-" in the first 1024 bytes, as ClamAV's ftm allows an offset). Others never match.
 */
export function targetMatches(target: number, head: Buffer): boolean {
  switch (target) {
    case 0:
      return true;
    case 1: {
      if (head.length < 0x40 || head[0] !== 0x4d || head[1] !== 0x5a) return false;
      const pe = head.readUInt32LE(0x3c);
      return pe + 4 <= head.length && head.readUInt32BE(pe) === 0x50450000;
    }
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
