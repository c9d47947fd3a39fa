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
 * ipip dispatch: in the outer header (outer IHL 10), the inner untouched.
 *
 * IPv6: the same fields in the DSR Destination Options header
 * (dsr_option.h) grown from 24 to 64 bytes — the same option type 0x5e,
 * option data length 54 instead of 18, so a receiver tells the two apart
 * by the lengths alone, as the IPv4 option's 20 tells it from 8:
 *
 *   byte 0      next header   6 (TCP); 41 (IPv6) under IPv6-in-IPv6
 *   byte 1      hdr ext len   7: (7 + 1) × 8 = 64 bytes
 *   byte 2      option type   0x5e (DSR6_OPT_TYPE)
 *   byte 3      opt data len  54
 *   byte 4-5    service port            network byte order
 *   byte 6-21   VIP                     (bytes 0-21 as in the 24-byte header)
 *   byte 22-37  secondary pod address
 *   byte 38-39  secondary pod port
 *   byte 40     flags (SC_F_*)
 *   byte 41     0
 *   byte 42-57  secondary node address
 *   byte 58-63  PadN: 0x01 0x04 0 0 0 0
 *
 * With the fixed header at 14 (after Ethernet) the three addresses start
 * at 60, 76 and 96: 4-byte aligned. ip-option dispatch: the header directly
 * after the fixed header of the DNATed packet (payload length + 64).
 * IPv6-in-IPv6: directly after the OUTER fixed header (outer next header
 * 60, this header's next header 41), the inner packet untouched. No
 * checksum covers any of it. */
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

#define SC6_HDR_LEN 64
#define SC6_HDR_EXT_LEN 7
#define SC6_OPT_DATA_LEN 54
#define SC6_PADN_LEN 4

struct sc6_hdr {
	__u8 nexthdr;
	__u8 hdrlen;    /* SC6_HDR_EXT_LEN */
	__u8 opt_type;  /* DSR6_OPT_TYPE */
	__u8 opt_len;   /* SC6_OPT_DATA_LEN */
	__be16 port;
	__u8 vip[16];
	__u8 sec_ip[16];
	__be16 sec_port;
	__u8 flags;     /* SC_F_* */
	__u8 reserved;  /* 0 */
	__u8 sec_node[16];
	__u8 pad_type;  /* DSR6_PADN */
	__u8 pad_len;   /* SC6_PADN_LEN */
	__u8 pad[SC6_PADN_LEN];
} __attribute__((packed));

#endif
