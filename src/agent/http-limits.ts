// Limits for the scrape endpoints (the agent's metrics.listen, the node
// agent's --metrics-listen). Both may face a network — the edge's host
// firewall opens metrics.listen's port to everyone, a node's endpoint sits on
// the cluster network — and every connection Node holds costs heap in the
// process that forwards: a flood of idle connections must not be what gives.
import type { Server } from 'node:http';

/**
 * Connections held at once. Scrapers keep one each; beyond this a
 * connection is closed as it comes.
 */
export const SCRAPE_MAX_CONNECTIONS = 64;
/** A connection's time for its request, not Node's 60 s for headers and 300 s for the whole request. */
export const SCRAPE_REQUEST_TIMEOUT_MS = 10_000;

/** Applies the scrape limits to a server before it listens. */
export function limitScrapeServer(server: Server): Server {
  server.maxConnections = SCRAPE_MAX_CONNECTIONS;
  server.headersTimeout = SCRAPE_REQUEST_TIMEOUT_MS;
  server.requestTimeout = SCRAPE_REQUEST_TIMEOUT_MS;
  return server;
}
