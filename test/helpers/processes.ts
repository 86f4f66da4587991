import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { waitFor } from './wait.js';

export const CLI = fileURLToPath(new URL('../../dist/cli/outpost.js', import.meta.url));

/** A real `outpost` process; its output is kept for the failure message. */
export class OutpostProcess {
  readonly child: ChildProcess;
  output = '';
  exited: Promise<number | null>;

  constructor(args: string[], env: Record<string, string> = {}) {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`);
    this.child = spawn(process.execPath, [CLI, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    this.child.stdout!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    this.child.stderr!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  /**
   * A process starts in half a second on an idle machine, but two test files run at once, each with
   * processes of its own doing fsyncs; once, in CI, an agent printed nothing for 15 s. The deadline
   * bounds a failure; it is not a measure of start-up time.
   */
  async waitForLog(text: string, timeoutMs = 60_000): Promise<void> {
    await waitFor(
      `"${text}" in the output of outpost ${this.child.spawnargs.slice(2).join(' ')}\n${this.output}`,
      () => this.output.includes(text),
      timeoutMs,
    );
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}

/** `outpost hub` in development mode on loopback: MQTT on `mqttPort`, HTTP on `httpPort`, data in `dataDir`. */
export function devHubArgs(mqttPort: number, httpPort: number, dataDir: string): string[] {
  return ['hub', '--dev', '--port', String(mqttPort), '--host', '127.0.0.1', '--http', `127.0.0.1:${httpPort}`, '--data', dataDir];
}

/** Runs an `outpost` command to its end (bounded): its exit status and output. */
export function runOutpost(args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 20_000 });
}

/**
 * Runs an `outpost` command that must succeed, without blocking this process meanwhile (a test
 * that proxies other processes' traffic must keep serving it); resolves to what it printed.
 */
export async function outpostAsync(args: string[], env: Record<string, string> = {}, timeoutMs = 30_000): Promise<string> {
  const { status, stdout, stderr } = await runOutpostAsync(args, env, timeoutMs);
  if (status !== 0) throw new Error(`outpost ${args.join(' ')} exited with ${status ?? 'a signal'}: ${stderr}`);
  return stdout;
}

/**
 * runOutpost without blocking this process meanwhile (it may serve what the command talks to: a
 * proxy, an S3-compatible server): its exit status (null if killed past `timeoutMs`) and output.
 */
export function runOutpostAsync(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 30_000,
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ status: code, stdout, stderr });
    });
  });
}

/** Runs an `outpost` command that must succeed; returns what it printed. */
export function outpost(args: string[], env: Record<string, string> = {}): string {
  const run = runOutpost(args, env);
  if (run.status !== 0) throw new Error(`outpost ${args.join(' ')} exited with ${run.status}: ${run.stderr}`);
  return run.stdout;
}

/** JSON over HTTP against a process's API. */
export async function http<T = unknown>(method: string, url: string, body?: unknown): Promise<{ status: number; body: T }> {
  const response = await fetch(url, {
    method,
    ...(body !== undefined && { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, body: (text ? JSON.parse(text) : undefined) as T };
}
