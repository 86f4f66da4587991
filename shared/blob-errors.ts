import { ErrorCode, OutpostError } from './errors.js';

/** A chunk of blob content that cannot be part of the content it names: its index or its length is wrong. */
export class BlobChunkError extends OutpostError {
  constructor(hash: string, index: number, detail: string) {
    super(ErrorCode.BLOB_INVALID_CHUNK, `chunk ${index} of content ${hash}: ${detail}; send the chunks the upload was begun with`);
  }
}

/**
 * Blob content whose bytes are not what its address says (SHA-256 or size): it was damaged on
 * the way or at rest. The chunks received are dropped; upload the content again.
 */
export class BlobMismatchError extends OutpostError {
  constructor(hash: string, detail: string) {
    super(ErrorCode.BLOB_MISMATCH, `content ${hash} does not match its address (${detail}); its chunks were dropped: upload it again`);
  }
}

/**
 * Blob content held on a device whose bytes no longer match its address: the storage under it
 * changed them since they were stored and checked (a rotting card). `remedy` says what follows.
 */
export class BlobDamagedError extends OutpostError {
  constructor(hash: string, remedy: string) {
    super(
      ErrorCode.BLOB_MISMATCH,
      `content ${hash} held on this device no longer matches its address (its storage changed the bytes); ${remedy}`,
    );
  }
}

/** Blob content that cannot be completed or read yet: chunks are missing. */
export class BlobIncompleteError extends OutpostError {
  constructor(
    hash: string,
    readonly missing: readonly number[],
  ) {
    super(ErrorCode.BLOB_INCOMPLETE, `content ${hash} lacks ${missing.length} chunk(s) (first ${missing[0]}); send them, then complete it`);
  }

  override toJSON(): { code: ErrorCode; message: string; missing: readonly number[] } {
    return { ...super.toJSON(), missing: this.missing };
  }
}

/** Blob content larger than the hub takes: nothing of it was kept. */
export class BlobTooLargeError extends OutpostError {
  constructor(readonly limit: number) {
    super(ErrorCode.BLOB_TOO_LARGE, `blob content over the limit of ${limit} bytes; nothing of it was kept`);
  }

  override toJSON(): { code: ErrorCode; message: string; limit: number } {
    return { ...super.toJSON(), limit: this.limit };
  }
}

/** Blob content the hub will not take or send for a collection: it holds no blobs, or this device may not write or read it. */
export class BlobRefusedError extends OutpostError {
  constructor(collection: string, detail: string) {
    super(ErrorCode.BLOB_REFUSED, `blob content for collection ${JSON.stringify(collection)} refused: ${detail}`);
  }
}

/**
 * Blob content that cannot be read now: the device does not hold it and cannot fetch it (it is
 * offline, or the hub does not hold it whole). Try again once connected.
 */
export class BlobUnavailableError extends OutpostError {
  constructor(hash: string, detail: string) {
    super(ErrorCode.BLOB_UNAVAILABLE, `content ${hash} is not available: ${detail}`);
  }
}
