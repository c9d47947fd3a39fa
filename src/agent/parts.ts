// Builds the agent's parts from the config. Each part is optional so that
// an edge without, say, a reachable cluster still forwards and announces.
import type { EdgelbConfig } from '../config/types.js';
import type { Logger } from '../log/logger.js';
import type { AgentParts } from './agent.js';

export async function buildParts(_config: EdgelbConfig, _log: Logger): Promise<AgentParts> {
  return {};
}
