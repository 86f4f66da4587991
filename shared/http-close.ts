/**
 * How long a stopping HTTP server lets requests under way finish before it cuts their
 * connections: a client stalled in the middle of a request (a body half sent, a link gone quiet)
 * would otherwise hold the stop of the hub or agent forever, past any service manager's timeout.
 */
export const HTTP_CLOSE_GRACE_MS = 5_000;

/**
 * Runs `close` (which stops accepting and resolves once every connection is gone) and, if it has
 * not resolved within `graceMs`, ends the connections still open: `server` is a node:http Server
 * (named by its one method here, as shared code opens no sockets).
 */
export async function closeWithin(
  server: { closeAllConnections(): void },
  close: () => Promise<void>,
  graceMs = HTTP_CLOSE_GRACE_MS,
): Promise<void> {
  const cut = setTimeout(() => server.closeAllConnections(), graceMs);
  try {
    await close();
  } finally {
    clearTimeout(cut);
  }
}
