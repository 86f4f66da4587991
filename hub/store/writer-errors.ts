import { StorageFailedError } from '../../shared/errors.js';

/**
 * The store refuses this process as its writer: nothing more can be committed through it, by
 * whatever store it is. Whoever runs the hub stops it, so that a supervisor restarts it (it then
 * stands by, or reopens the store at the true head).
 */
export abstract class WriterRefusedError extends StorageFailedError {}

/**
 * Another hub raised the leadership epoch: this one has been deposed and may no longer commit.
 * Nothing of the refused group commit was written.
 */
export class WriterFencedError extends WriterRefusedError {
  constructor(
    where: string,
    readonly epoch: number,
    readonly storedEpoch: number,
  ) {
    super(where, 'commit to', {
      cause: new Error(
        `this hub writes as epoch ${epoch} but the database is at epoch ${storedEpoch}: another hub leads now; stop this one`,
      ),
    });
  }
}

/**
 * Someone else committed since this writer last did (a second hub on the same database without
 * leadership, or a commit whose outcome this one never learned). Committing on what it read
 * would hand out LSNs twice, so nothing was written; reopen the store to continue.
 */
export class ConcurrentWriterError extends WriterRefusedError {
  constructor(
    where: string,
    readonly expectedHead: number,
    readonly storedHead: number,
  ) {
    super(where, 'commit to', {
      cause: new Error(
        `another writer committed to it (head ${storedHead}, this hub expected ${expectedHead}): only one hub may write at a time; ` +
          'reopen the store once the other has stopped',
      ),
    });
  }
}
