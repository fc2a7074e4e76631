/**
 * x86 BCJ filter decoder (7z coder 03030103): E8/E9 call/jump targets were made absolute by the
 * encoder to compress better; this converts them back. Same algorithm as the LZMA SDK's Bra86.c and
 * xz's simple/x86.c, made streaming by carrying the last (up to 4) unprocessed bytes and the
 * prev_mask/prev_pos state between chunks.
 */
const ALLOWED = [true, true, true, false, true, false, false, false];
const BITNUM = [0, 1, 2, 2, 3, 3, 3, 3];
const ms = (b: number): boolean => b === 0 || b === 0xff;

export async function* bcjX86Decode(input: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let prevMask = 0;
  let prevPos = -5;
  let nowPos = 0;
  let carry = Buffer.alloc(0);
  for await (const chunk of input) {
    const buf = carry.length ? Buffer.concat([carry, chunk]) : Buffer.from(chunk);
    if (buf.length < 5) {
      carry = buf;
      continue;
    }
    if (nowPos - prevPos > 5) prevPos = nowPos - 5;
    const limit = buf.length - 5;
    let i = 0;
    while (i <= limit) {
      const b = buf[i]!;
      if (b !== 0xe8 && b !== 0xe9) {
        i++;
        continue;
      }
      const offset = nowPos + i - prevPos;
      prevPos = nowPos + i;
      if (offset > 5) prevMask = 0;
      else for (let k = 0; k < offset; k++) prevMask = ((prevMask & 0x77) << 1) & 0xff;
      const b4 = buf[i + 4]!;
      if (ms(b4) && ALLOWED[(prevMask >> 1) & 7] && prevMask >> 1 < 0x10) {
        let src = ((b4 << 24) | (buf[i + 3]! << 16) | (buf[i + 2]! << 8) | buf[i + 1]!) >>> 0;
        let dest: number;
        for (;;) {
          dest = (src - (nowPos + i + 5)) >>> 0;
          if (prevMask === 0) break;
          const n = BITNUM[prevMask >> 1]!;
          const t = (dest >>> (24 - n * 8)) & 0xff;
          if (!ms(t)) break;
          src = (dest ^ (2 ** (32 - n * 8) - 1)) >>> 0;
        }
        buf[i + 4] = ~(((dest >>> 24) & 1) - 1) & 0xff;
        buf[i + 3] = (dest >>> 16) & 0xff;
        buf[i + 2] = (dest >>> 8) & 0xff;
        buf[i + 1] = dest & 0xff;
        i += 5;
        prevMask = 0;
      } else {
        i++;
        prevMask |= 1;
        if (ms(b4)) prevMask |= 0x10;
      }
    }
    nowPos += i;
    if (i > 0) yield buf.subarray(0, i);
    carry = buf.subarray(i);
  }
  if (carry.length) yield carry;
}
