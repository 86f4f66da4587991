/** What the kernel says a process uses: resident memory and CPU time, from /proc (Linux). */
import { readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat's utime and stime (USER_HZ, 100 on Linux). */
const TICKS_PER_SECOND = 100;

export interface ProcSample {
  rssBytes: number;
  /** User plus system CPU time since the process started. */
  cpuSeconds: number;
  /** When the sample was taken (performance.now(), ms). */
  at: number;
}

export function sampleProc(pid: number): ProcSample {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  // Fields after the command name, which may itself hold spaces: utime and stime are fields 14 and 15.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return {
    rssBytes: Number(/VmRSS:\s+(\d+)/.exec(status)![1]) * 1024,
    cpuSeconds: (Number(stat[11]) + Number(stat[12])) / TICKS_PER_SECOND,
    at: performance.now(),
  };
}

/** CPU used between two samples, as a fraction of one core. */
export function coreShare(a: ProcSample, b: ProcSample): number {
  return (b.cpuSeconds - a.cpuSeconds) / ((b.at - a.at) / 1000);
}

export const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
