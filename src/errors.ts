/**
 * Typed errors. Every error scangate raises on purpose carries a stable `code` so callers, logs and
 * tests can branch on it without matching message text (the undici/fastify convention).
 */
export class ScangateError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A configuration file or value that cannot be used; `path` is the key path, e.g. `listeners.0.listen`. */
export class ConfigError extends ScangateError {
  readonly path: string;
  constructor(path: string, message: string, options?: { cause?: unknown }) {
    super('ERR_CONFIG', path ? `${path}: ${message}` : message, options);
    this.path = path;
  }
}

/** A signature database line or file that cannot be loaded; names the file and the 1-based line. */
export class SignatureError extends ScangateError {
  readonly file: string;
  readonly line: number;
  constructor(file: string, line: number, message: string, options?: { cause?: unknown }) {
    super('ERR_SIGNATURE', line > 0 ? `${file}:${line}: ${message}` : `${file}: ${message}`, options);
    this.file = file;
    this.line = line;
  }
}

/** A scan that could not complete (I/O, backend down, timeout). Maps to the protocol's temporary error. */
export class ScanError extends ScangateError {}

/** A protocol parser met bytes it will not accept. `status` is the reply the session should give. */
export class ProtocolError extends ScangateError {
  readonly status: number;
  constructor(code: string, message: string, status = 400) {
    super(code, message);
    this.status = status;
  }
}

/** An upstream server could not be reached or could not be trusted. */
export class UpstreamError extends ScangateError {}

/** A container whose structure is corrupt or truncated. The scanner still matches its raw bytes. */
export class UnpackError extends ScangateError {
  readonly format: string;
  constructor(format: string, code: string, message: string, options?: { cause?: unknown }) {
    super(code, `${format}: ${message}`, options);
    this.format = format;
  }
}

/** A configured limit was reached while unpacking; the scanner turns it into Heuristics.Limits.Exceeded.* */
export class UnpackLimitError extends ScangateError {
  /** 'MaxFileSize' | 'MaxFiles' | 'MaxCompressionRatio' | 'MaxRecursion' | 'MaxScanSize' | 'MaxScanTime' */
  readonly limit: string;
  constructor(limit: string, message: string) {
    super('ERR_LIMIT_EXCEEDED', message);
    this.limit = limit;
  }
}
