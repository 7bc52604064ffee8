/**
 * Errors raised by the pure core. Each has a stable `code`; adapters map codes to transport
 * responses in one place (src/http/errors.ts).
 */
export class CrdtError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CrdtError';
    this.code = code;
  }
}

/** A replicated message that cannot be decoded or violates the format's limits. */
export class CodecError extends CrdtError {
  constructor(code: CodecErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'CodecError';
  }
}

export type CodecErrorCode =
  | 'CODEC_MALFORMED'
  | 'CODEC_UNSUPPORTED_VERSION'
  | 'CODEC_LIMIT_EXCEEDED'
  | 'CODEC_INVALID_FIELD';
