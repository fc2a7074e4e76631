/**
 * Embedded objects in PowerPoint 97-2003 (MS-PPT). The "PowerPoint Document" stream is a tree of
 * records: an 8-byte header (recVer:4 recInstance:12, recType:16, recLen:32, little-endian), then
 * either child records (recVer 0xF, a container) or data (an atom). An embedded OLE object
 * (ExOleObjStg, type 0x1011, §2.10.34) holds a whole compound file: stored as is when
 * recInstance is 0, zlib-compressed after a 4-byte decompressed size when it is 1. That compound
 * file is what we yield; the scanner opens it with the OLE2 unpacker (clam.ppt hides clam.exe in
 * an OLE1 package there).
 */
import type { ObjectSource } from '../source.js';

const EX_OLE_OBJ_STG = 0x1011;

export interface PptObject {
  /** Offset of the object's data in the stream (after the 4-byte size when compressed). */
  start: number;
  end: number;
  compressed: boolean;
}

/**
 * Walks the record tree of a "PowerPoint Document" stream and returns every ExOleObjStg. Records
 * are visited in file order (a container's header is followed by its children), so the walk is a
 * single forward scan whose step count is bounded by the stream size / 8; a record running past
 * its parent or the stream ends the walk.
 */
export async function findPptObjects(
  stream: ObjectSource,
  maxObjects: number,
  signal: AbortSignal,
): Promise<PptObject[]> {
  const found: PptObject[] = [];
  let pos = 0;
  while (pos + 8 <= stream.size && found.length < maxObjects) {
    if (signal.aborted) break;
    const h = await stream.read(pos, 8);
    if (h.length < 8) break;
    const verInst = h.readUInt16LE(0);
    const type = h.readUInt16LE(2);
    const len = h.readUInt32LE(4);
    const dataAt = pos + 8;
    if ((verInst & 0xf) === 0xf) {
      pos = dataAt; // container: its children follow directly
      continue;
    }
    if (dataAt + len > stream.size) break;
    if (type === EX_OLE_OBJ_STG) {
      const compressed = verInst >> 4 === 1;
      const start = compressed ? dataAt + 4 : dataAt;
      if (start < dataAt + len) found.push({ start, end: dataAt + len, compressed });
    }
    pos = dataAt + len;
  }
  return found;
}
