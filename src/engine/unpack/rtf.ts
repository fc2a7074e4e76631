/**
 * RTF embedded objects (RTF 1.9.1 spec, "Objects"): each `\objdata` destination holds the object
 * as hex digits, which is decoded and yielded (an OLE1 object, which `ole1Unpacker` opens in turn).
 *
 * Crafted documents (CVE-2017-11882, CVE-2017-0199 droppers) hide the hex among control words,
 * nested groups, line breaks and `\binN` runs, which Word ignores or decodes. So the object's
 * extent is the whole group (brace depth tracked, escaped braces skipped), and the decoder is an
 * RTF tokenizer that keeps hex digits and `\bin` bytes and drops control words and symbols.
 * Both are byte-level state machines fed chunk by chunk: nothing is held but the current state.
 */
import type { ObjectSource } from '../source.js';
import { checkAbort, EntryCounter, limitOutput } from './limits.js';
import { ole1Unpacker, packagedFile } from './ole1.js';
import type { Entry, UnpackContext, Unpacker } from './types.js';

export { ole1Unpacker, packagedFile };

const BACKSLASH = 0x5c;
const OPEN = 0x7b;
const CLOSE = 0x7d;
/** Control words longer than this are not real ones; they are cut (RTF caps them at 32). */
const MAX_WORD = 32;

const isLetter = (c: number) => (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
function hexValue(c: number): number {
  if (isDigit(c)) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/** What the lexer reports; `i` is the index in the chunk being fed. */
export interface RtfSink {
  open(i: number): void;
  close(i: number): void;
  /** A control word, reported at the byte that ended it (a delimiting space is consumed). */
  word(name: string, param: number | null, i: number): void;
  /** A control symbol such as `\*`, `\{`, `\\`; `\'hh` is reported as the symbol `'`. */
  symbol(c: number): void;
  text(c: number): void;
  /** One byte of a `\binN` run. */
  bin(b: number): void;
}

/**
 * RTF tokenizer (RTF 1.9.1 "Conventions of an RTF reader"): groups, control words with optional
 * numeric parameter and delimiting space, control symbols, `\'hh` escapes, `\binN` raw data.
 * A byte-level state machine, so tokens may straddle chunks.
 */
export class RtfLexer {
  private mode: 'text' | 'escape' | 'word' | 'param' | 'hex' | 'bin' = 'text';
  private word = '';
  private param = 0;
  private negative = false;
  private remaining = 0;

  feed(chunk: Buffer, sink: RtfSink): void {
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i]!;
      switch (this.mode) {
        case 'bin':
          sink.bin(c);
          if (--this.remaining === 0) this.mode = 'text';
          continue;
        case 'hex':
          if (--this.remaining === 0) this.mode = 'text';
          continue;
        case 'escape':
          if (isLetter(c)) {
            this.mode = 'word';
            this.word = String.fromCharCode(c);
            continue;
          }
          sink.symbol(c);
          if (c === 0x27) {
            this.mode = 'hex'; // \'hh: an escaped character, not object data
            this.remaining = 2;
          } else this.mode = 'text';
          continue;
        case 'word':
          if (isLetter(c)) {
            if (this.word.length < MAX_WORD) this.word += String.fromCharCode(c);
            continue;
          }
          if (isDigit(c) || c === 0x2d) {
            this.mode = 'param';
            this.negative = c === 0x2d;
            this.param = this.negative ? 0 : c - 0x30;
            continue;
          }
          this.mode = 'text';
          sink.word(this.word, null, i);
          if (c === 0x20) continue; // the delimiting space belongs to the control word
          break;
        case 'param': {
          if (isDigit(c)) {
            this.param = Math.min(this.param * 10 + (c - 0x30), 0x7fffffff);
            continue;
          }
          const param = this.negative ? -this.param : this.param;
          this.mode = 'text';
          sink.word(this.word, param, i);
          if (this.word === 'bin' && param > 0) {
            this.mode = 'bin';
            this.remaining = param;
            if (c === 0x20) continue;
            sink.bin(c); // no delimiter: this byte is already \bin data
            if (--this.remaining === 0) this.mode = 'text';
            continue;
          }
          if (c === 0x20) continue;
          break;
        }
        case 'text':
          break;
      }
      if (c === BACKSLASH) this.mode = 'escape';
      else if (c === OPEN) sink.open(i);
      else if (c === CLOSE) sink.close(i);
      else sink.text(c);
    }
  }
}

interface ObjRange {
  start: number;
  end: number;
}

/** Finds every `\objdata` group: from just after the keyword to the brace that closes its group. */
async function findObjData(source: ObjectSource, ctx: UnpackContext): Promise<ObjRange[]> {
  const found: ObjRange[] = [];
  const counter = new EntryCounter('rtf', ctx);
  const lexer = new RtfLexer();
  let depth = 0;
  let open: { start: number; depth: number } | null = null;
  let base = 0;
  const sink: RtfSink = {
    open: () => {
      depth++;
    },
    close: (i) => {
      if (open && depth <= open.depth) {
        counter.next();
        found.push({ start: open.start, end: base + i });
        open = null;
      }
      depth = Math.max(0, depth - 1);
    },
    word: (name, _param, i) => {
      if (name === 'objdata' && !open) open = { start: base + i, depth };
    },
    symbol: () => {},
    text: () => {},
    bin: () => {},
  };
  for await (const chunk of source.stream()) {
    checkAbort(ctx);
    lexer.feed(chunk, sink);
    base += chunk.length;
  }
  if (open) {
    counter.next();
    found.push({ start: (open as { start: number }).start, end: base }); // unterminated: runs to the end
  }
  return found;
}

/**
 * Decodes an `\objdata` body: hex digit pairs and `\binN` bytes. Control words are dropped, and so
 * are ignorable destinations (`{\* …}`), which Word skips whole.
 */
export class RtfHexDecoder implements RtfSink {
  private readonly lexer = new RtfLexer();
  private out: number[] = [];
  private nibble = -1;
  private depth = 0;
  /** Depth of the ignorable group being skipped (0: none). */
  private skipFrom = 0;
  private groupOpened = false;

  write(chunk: Buffer): Buffer {
    this.lexer.feed(chunk, this);
    const b = Buffer.from(this.out);
    this.out = [];
    return b;
  }

  open(): void {
    this.depth++;
    this.groupOpened = true;
  }

  close(): void {
    if (this.skipFrom && this.depth <= this.skipFrom) this.skipFrom = 0;
    this.depth = Math.max(0, this.depth - 1);
    this.groupOpened = false;
  }

  word(): void {
    this.groupOpened = false;
  }

  symbol(c: number): void {
    if (c === 0x2a && this.groupOpened && !this.skipFrom) this.skipFrom = this.depth;
    this.groupOpened = false;
  }

  text(c: number): void {
    const v = hexValue(c);
    if (v < 0 || this.skipFrom) return; // white space, stray characters, skipped groups
    this.groupOpened = false;
    if (this.nibble < 0) this.nibble = v;
    else {
      this.out.push((this.nibble << 4) | v);
      this.nibble = -1;
    }
  }

  bin(b: number): void {
    if (this.skipFrom) return;
    this.nibble = -1;
    this.out.push(b);
  }
}

async function* decodeObject(source: ObjectSource, o: ObjRange): AsyncGenerator<Buffer> {
  const d = new RtfHexDecoder();
  for await (const chunk of source.stream(o.start, o.end)) {
    const out = d.write(chunk);
    if (out.length) yield out;
  }
}

export const rtfUnpacker: Unpacker = {
  type: 'rtf',
  detect: (head) => head.subarray(0, 5).toString('latin1') === '{\\rtf',
  async *entries(source: ObjectSource, ctx: UnpackContext): AsyncIterable<Entry> {
    let n = 0;
    for (const o of await findObjData(source, ctx)) {
      n++;
      yield {
        name: `objdata-${n}`,
        open: () => limitOutput('rtf', decodeObject(source, o), ctx, Math.max(1, o.end - o.start)),
      };
    }
  },
};
