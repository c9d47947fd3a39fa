// Address blocks that hold no reachable unicast host: no router forwards a
// packet for them across the internet or a fabric. One list for the places
// that must refuse them — VIP pools (config), and the addresses an edge
// sends to (endpoints and nodes, src/model/backend-address.ts).
import { parseCidr, type Cidr } from './cidr.js';

export interface SpecialBlock {
  cidr: Cidr;
  /** What the block is, as a sentence names it, with the block ("loopback (127.0.0.0/8)"). */
  what: string;
}

const block = (cidr: string, what: string): SpecialBlock => ({ cidr: parseCidr(cidr), what });

/** Reach no host anywhere: "this network", loopback, multicast, the reserved block and broadcast, the unspecified address. */
export const NOWHERE_BLOCKS: readonly SpecialBlock[] = [
  block('0.0.0.0/8', '"this network" (0.0.0.0/8)'),
  block('224.0.0.0/4', 'multicast (224.0.0.0/4)'),
  block('240.0.0.0/4', 'reserved or broadcast (240.0.0.0/4)'),
  block('ff00::/8', 'multicast (ff00::/8)'),
  block('::/128', 'the unspecified address (::)'),
  block('127.0.0.0/8', 'loopback (127.0.0.0/8)'),
  block('::1/128', 'loopback (::1)'),
];

/**
 * Link-local addresses (no router forwards them off their link, and an
 * edge's FIB lookup has no link to pick) and IPv4-mapped IPv6 (a host's
 * notation for IPv4 peers, never on the wire).
 */
const OFF_WIRE_BLOCKS: readonly SpecialBlock[] = [
  block('169.254.0.0/16', 'link-local (169.254.0.0/16)'),
  block('fe80::/10', 'link-local (fe80::/10)'),
  block('::ffff:0:0/96', 'IPv4-mapped IPv6 (::ffff:0:0/96)'),
];

/** Where an edge never sends a client's packet (an endpoint, a node as next hop): NOWHERE_BLOCKS, link-local, IPv4-mapped. */
export const UNREACHABLE_BLOCKS: readonly SpecialBlock[] = [...NOWHERE_BLOCKS, ...OFF_WIRE_BLOCKS];

/** Where a VIP can never be: the same blocks. */
export const NOT_VIP_BLOCKS: readonly SpecialBlock[] = UNREACHABLE_BLOCKS;
