import type { IngestTx } from './store/hub-store.js';

/** Collects an agent's committed ops into runs of consecutive seqs at consecutive LSNs, and stores them. */
export class RunRecorder {
  #run: { first: number; last: number; firstLsn: number } | undefined;

  constructor(
    private readonly tx: IngestTx,
    private readonly agentId: string,
    private readonly inc: string,
  ) {}

  add(seq: number, lsn: number): void {
    const run = this.#run;
    if (run && seq === run.last + 1 && lsn === run.firstLsn + (seq - run.first)) {
      run.last = seq;
      return;
    }
    this.flush();
    this.#run = { first: seq, last: seq, firstLsn: lsn };
  }

  flush(): void {
    if (this.#run) this.tx.putCommittedRun(this.agentId, this.inc, this.#run.first, this.#run.last, this.#run.firstLsn);
    this.#run = undefined;
  }
}
