/* The second-chance option: the DSR option (dsr_option.h) with length 20,
 * naming the backend that held the flow's Maglev slot before the service's
 * last change (docs/second-chance.md).
 *
 *   byte 0      type 0x9e (DSR_OPT_TYPE)
 *   byte 1      length 20
 *   byte 2-3    service port            network byte order
 *   byte 4-7    VIP                     network byte order
 *   byte 8-11   secondary pod address
 *   byte 12-13  secondary pod port
 *   byte 14     flags (SC_F_*)
 *   byte 15     0
 *   byte 16-19  secondary node address
 *
 * ip-option dispatch: after the base header of the DNATed packet (IHL 10).
 * ipip dispatch: in the outer header (outer IHL 10), the inner untouched. */
#ifndef EDGELB_SC_OPTION_H
#define EDGELB_SC_OPTION_H

#include <linux/types.h>
#include "dsr_option.h"

#define SC_OPT_LEN 20

/* Set by a node that handed an ipip packet on: it is never handed again. */
#define SC_F_HANDED 0x01

struct sc_opt {
	__u8 type;
	__u8 len;
	__be16 port;
	__be32 vip;
	__be32 sec_ip;
	__be16 sec_port;
	__u8 flags;
	__u8 pad;
	__be32 sec_node;
} __attribute__((packed));

#endif
