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

/* IPv6: a Destination Options extension header (Next Header 60) of 24
 * bytes placed directly after the fixed 40-byte header, on a TCP SYN and on
 * every UDP datagram (the fixed header's Next Header becomes 60, its payload
 * length grows by 24):
 *
 *   byte 0      next header   the packet's own (6 TCP / 17 UDP)
 *   byte 1      hdr ext len   2: (2 + 1) × 8 = 24 bytes
 *   byte 2      option type   0x5e = action 01 (a destination that does not
 *                             know it discards the packet silently: a pod
 *                             not behind our node program never answers from
 *                             its own address), may-change 0, number 30
 *                             (RFC 4727's experiment value)
 *   byte 3      opt data len  18
 *   byte 4-5    service port, network byte order
 *   byte 6-21   service IPv6 address (the VIP), network byte order
 *   byte 22-23  PadN          0x01 0x00 (pads to a multiple of 8)
 *
 * The L4 checksum does not cover extension headers, so inserting or
 * removing the header changes none. The path-probe marker is the same header
 * with VIP :: and port 0. A receiver accepts it only when it is the FIRST
 * extension header and all 24 bytes match this layout. With the fixed
 * header at a 4-byte aligned offset (14 after Ethernet: 54), the address
 * words are 4-byte aligned too (bytes 6..21 at 60..75). */
#define DSR6_OPT_TYPE 0x5e
#define DSR6_OPT_DATA_LEN 18
#define DSR6_HDR_EXT_LEN 2
#define DSR6_HDR_LEN 24
#define DSR6_PADN 0x01

struct dsr6_hdr {
	__u8 nexthdr;
	__u8 hdrlen;   /* DSR6_HDR_EXT_LEN */
	__u8 opt_type; /* DSR6_OPT_TYPE */
	__u8 opt_len;  /* DSR6_OPT_DATA_LEN */
	__be16 port;
	__u8 addr[16];
	__u8 pad_type; /* DSR6_PADN */
	__u8 pad_len;  /* 0 */
} __attribute__((packed));

#endif
