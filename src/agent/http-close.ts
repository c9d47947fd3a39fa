import type { Server } from 'node:http';

/** Closes a server now: open keep-alive connections would otherwise hold stop() for their timeout. */
export async function closeNow(server: Server | null): Promise<void> {
  if (!server) return;
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
}
