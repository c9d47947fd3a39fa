/* The edge → node DSR wire format (ip-option dispatch).
 *
 * An 8-byte IPv4 option placed directly after the 20-byte base header
 * (IHL becomes 7), on a TCP SYN and on every UDP packet:
 *
 *   byte 0   type   0x9e  copied=1, class=0, number=30 — RFC 4727's
 *                         "RFC3692-style experiment" number, so it can
 *                         never collide with an assigned option
 *   byte 1   length 8
 *   byte 2-3 service port, network byte order
 *   byte 4-7 service IPv4 address (the VIP), network byte order
 *
 * Both fields are in network byte order on the wire on every host; there
 * is no host-order quirk. The copied bit makes a fragmenting router keep
 * the option in every fragment.
 */
#ifndef EDGELB_DSR_OPTION_H
#define EDGELB_DSR_OPTION_H

#include <linux/types.h>

#define DSR_OPT_TYPE 0x9e
#define DSR_OPT_LEN 8

struct dsr_opt {
	__u8 type;
	__u8 len;
	__be16 port;
	__be32 addr;
} __attribute__((packed));

#endif
