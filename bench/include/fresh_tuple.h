/* The benchmark's fresh-tuple frames, shared by the two generators that
 * make them (bench/bpf/live_frames.c in the kernel, bench/native/afpacket_tx.c
 * in user space): where the words a new flow changes sit in the template
 * (untagged Ethernet, IPv4 without options, TCP), and how a checksum follows
 * one changed word. Plain C types only: both compilers read it. */
#ifndef EDGELB_BENCH_FRESH_TUPLE_H
#define EDGELB_BENCH_FRESH_TUPLE_H

#define FRESH_OFF_IP_CSUM 24
#define FRESH_OFF_SADDR_LO 28 /* the low 16 bits of the source address */
#define FRESH_OFF_SPORT 34
#define FRESH_OFF_TCP_CSUM 50
#define FRESH_MIN_LEN 54

/* RFC 1624 eqn. 3 for one 16-bit word: HC' = ~(~HC + ~m + m'). The words
 * are in network order on every side, so no swapping is needed. */
static inline __attribute__((always_inline)) unsigned short
fresh_csum_replace16(unsigned short hc, unsigned short old, unsigned short new)
{
	unsigned int s = (unsigned short)~hc;

	s += (unsigned short)~old;
	s += new;
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (unsigned short)~s;
}

#endif
