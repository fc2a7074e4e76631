/** The parts of the clamscan npm package (2.4, untyped) the clamd daemon test uses. */
declare module 'clamscan' {
  import type { Readable } from 'node:stream';
  interface ScanResult {
    isInfected: boolean | null;
    viruses: string[];
  }
  export default class NodeClam {
    init(options: Record<string, unknown>): Promise<NodeClam>;
    getVersion(): Promise<string>;
    isInfected(path: string): Promise<ScanResult & { file: string }>;
    scanStream(stream: Readable): Promise<ScanResult>;
  }
}
