import { InvalidArgumentError } from 'commander';

/** Parses `host:port` (or a bare port, meaning 127.0.0.1). */
export function parseHostPort(text: string): { host: string; port: number } {
  const match = /^(?:(.+):)?(\d{1,5})$/.exec(text);
  const port = Number(match?.[2]);
  if (!match || port > 65535) throw new InvalidArgumentError(`expected host:port, e.g. 127.0.0.1:8080, got ${JSON.stringify(text)}`);
  return { host: match[1] ?? '127.0.0.1', port };
}
