/* afpacket-tx: bench:datapath's live-traffic sender for kernels that refuse
 * BPF_F_TEST_XDP_LIVE_FRAMES (bench/lib/afpacket.ts). Not shipped.
 *
 * Sends COUNT copies of one Ethernet frame out of IFNAME through an
 * AF_PACKET socket with PACKET_QDISC_BYPASS (no qdisc: the frame goes
 * straight to the driver's xmit, for a veth into its peer's XDP program),
 * in sendmmsg batches (--method mmsg, the default) or through a
 * PACKET_TX_RING (--method ring). On 6.18.44-fc-v1300 sendmmsg was the
 * faster (0.53-0.55 against 0.36-0.50 Mpps through a bare XDP_TX, 1e6
 * frames, batches of 64-512): for 54-118-byte frames the ring saves no
 * copy (the kernel still builds an skb per frame) and adds the slot
 * handshake and the wait for completion. With --fresh every frame gets a new source address (low
 * 16 bits) and source port, both checksums patched incrementally (the frame
 * must be Ethernet + IPv4 without options + TCP), like the live-frames
 * harness's freshen() in bench/bpf/live_frames.c.
 *
 *   afpacket-tx --ifname IF --count N --frame HEX [--fresh] [--cpu C]
 *               [--method mmsg|ring] [--batch B]
 *
 * --cpu pins the sender (sched_setaffinity) before the first frame: on a
 * veth, the peer's NAPI poll — and so the XDP program under test — runs in
 * the softirq the sender's own transmit raises, on the same CPU.
 * Prints one JSON line: {"method":…,"sent":…,"wall_ns":…,"cpu":…} where
 * sent counts frames the kernel accepted and wall_ns is the monotonic time
 * from the first frame to the last send's return. Exit 0, 2 on bad usage,
 * 1 on a socket error.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "fresh_tuple.h"

#define MAX_FRAME 1514
#define MAX_BATCH 1024
/* TX ring geometry: RING_FRAMES slots of FRAME_SLOT bytes, 2 slots a page. */
#define FRAME_SLOT 2048
#define RING_FRAMES 512

struct opts {
	const char *ifname;
	uint64_t count;
	uint8_t frame[MAX_FRAME];
	size_t len;
	int fresh;
	int cpu;
	int ring;
	unsigned batch;
};

static void die_usage(const char *msg)
{
	fprintf(stderr, "afpacket-tx: %s\nusage: afpacket-tx --ifname IF --count N --frame HEX [--fresh] [--cpu C] [--method mmsg|ring] [--batch B]\n", msg);
	exit(2);
}

static void die_errno(const char *what)
{
	fprintf(stderr, "afpacket-tx: %s: %s\n", what, strerror(errno));
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static size_t parse_hex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = strlen(s), i;

	if (n % 2 || n / 2 > cap || n == 0)
		die_usage("--frame must be an even number of hex digits, at most 1514 bytes");
	for (i = 0; i < n / 2; i++) {
		unsigned v;

		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			die_usage("--frame is not hex");
		out[i] = (uint8_t)v;
	}
	return n / 2;
}

static void parse(int argc, char **argv, struct opts *o)
{
	int i;

	memset(o, 0, sizeof(*o));
	o->cpu = -1;
	o->ring = 0; /* sendmmsg: the faster of the two on 6.18.44-fc-v1300 */
	o->batch = 64;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--fresh")) {
			o->fresh = 1;
			continue;
		}
		if (!v)
			die_usage("an option lacks its value");
		i++;
		if (!strcmp(a, "--ifname"))
			o->ifname = v;
		else if (!strcmp(a, "--count"))
			o->count = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--frame"))
			o->len = parse_hex(v, o->frame, sizeof(o->frame));
		else if (!strcmp(a, "--cpu"))
			o->cpu = atoi(v);
		else if (!strcmp(a, "--batch"))
			o->batch = (unsigned)atoi(v);
		else if (!strcmp(a, "--method")) {
			if (!strcmp(v, "ring"))
				o->ring = 1;
			else if (!strcmp(v, "mmsg"))
				o->ring = 0;
			else
				die_usage("--method is mmsg or ring");
		} else
			die_usage("unknown option");
	}
	if (!o->ifname || !o->count || !o->len)
		die_usage("--ifname, --count and --frame are required");
	/* Shorter than 60 bytes is fine: a veth does not pad (a 54-byte SYN
	 * arrives as 54 bytes, as a live frame would). */
	if (o->len < ETH_HLEN)
		die_usage("--frame is shorter than an Ethernet header");
	if (o->batch < 1 || o->batch > MAX_BATCH)
		die_usage("--batch is 1..1024");
	if (o->fresh && (o->len < FRESH_MIN_LEN || o->frame[12] != 0x08 || o->frame[13] != 0x00 || o->frame[14] != 0x45 || o->frame[23] != 6))
		die_usage("--fresh needs an Ethernet + IPv4 (no options) + TCP frame");
}

static uint16_t get16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return v;
}

static void put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

/* Frame `seq` of a fresh-tuple run, written over `dst` (which holds the
 * template's other bytes already): 2^16 source addresses × 64 512 ports
 * before a tuple repeats. Checksums are patched from the template's words. */
static void freshen(uint8_t *dst, const uint8_t *tmpl, uint64_t seq)
{
	uint16_t old_lo = get16(tmpl + FRESH_OFF_SADDR_LO), old_port = get16(tmpl + FRESH_OFF_SPORT);
	uint16_t new_lo = htons((uint16_t)seq), new_port = htons((uint16_t)(1024 + (seq >> 16) % 64512));

	put16(dst + FRESH_OFF_SADDR_LO, new_lo);
	put16(dst + FRESH_OFF_SPORT, new_port);
	put16(dst + FRESH_OFF_IP_CSUM, fresh_csum_replace16(get16(tmpl + FRESH_OFF_IP_CSUM), old_lo, new_lo));
	put16(dst + FRESH_OFF_TCP_CSUM, fresh_csum_replace16(fresh_csum_replace16(get16(tmpl + FRESH_OFF_TCP_CSUM), old_lo, new_lo), old_port, new_port));
}

static int open_socket(const struct opts *o, struct sockaddr_ll *sll)
{
	/* Protocol 0: the socket receives nothing, so it adds no work to the
	 * receive path it is measuring. */
	int fd = socket(AF_PACKET, SOCK_RAW, 0), one = 1;

	if (fd < 0)
		die_errno("socket(AF_PACKET)");
	memset(sll, 0, sizeof(*sll));
	sll->sll_family = AF_PACKET;
	sll->sll_ifindex = (int)if_nametoindex(o->ifname);
	if (!sll->sll_ifindex)
		die_errno(o->ifname);
	if (bind(fd, (struct sockaddr *)sll, sizeof(*sll)))
		die_errno("bind");
	if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one)))
		die_errno("PACKET_QDISC_BYPASS");
	return fd;
}

/* sendmmsg in batches; a batch the kernel takes only part of is resent from
 * where it stopped (ENOBUFS: retried, counted as a retry, never dropped). */
static uint64_t send_mmsg(int fd, const struct opts *o, uint64_t *retries)
{
	static uint8_t bufs[MAX_BATCH][MAX_FRAME];
	static struct iovec iov[MAX_BATCH];
	static struct mmsghdr msgs[MAX_BATCH];
	uint64_t sent = 0;
	unsigned i;

	for (i = 0; i < o->batch; i++) {
		memcpy(bufs[i], o->frame, o->len);
		iov[i].iov_base = bufs[i];
		iov[i].iov_len = o->len;
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	while (sent < o->count) {
		unsigned n = o->count - sent < o->batch ? (unsigned)(o->count - sent) : o->batch, done = 0;

		if (o->fresh)
			for (i = 0; i < n; i++)
				freshen(bufs[i], o->frame, sent + i);
		while (done < n) {
			int r = sendmmsg(fd, msgs + done, n - done, 0);

			if (r < 0) {
				if (errno == ENOBUFS || errno == EAGAIN || errno == EINTR) {
					(*retries)++;
					continue;
				}
				die_errno("sendmmsg");
			}
			done += (unsigned)r;
		}
		sent += n;
	}
	return sent;
}

/* PACKET_TX_RING (TPACKET_V2): fill up to `batch` free slots, one send() to
 * hand them all to the kernel, which transmits them in that call. */
static uint64_t send_ring(int fd, const struct opts *o, uint64_t *retries)
{
	int v = TPACKET_V2;
	struct tpacket_req req = {
		.tp_block_size = FRAME_SLOT * 2,
		.tp_block_nr = RING_FRAMES / 2,
		.tp_frame_size = FRAME_SLOT,
		.tp_frame_nr = RING_FRAMES,
	};
	const size_t data_off = TPACKET2_HDRLEN - sizeof(struct sockaddr_ll);
	uint8_t *ring;
	uint64_t sent = 0, slot = 0;
	unsigned i;

	if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v, sizeof(v)))
		die_errno("PACKET_VERSION");
	if (setsockopt(fd, SOL_PACKET, PACKET_TX_RING, &req, sizeof(req)))
		die_errno("PACKET_TX_RING");
	ring = mmap(NULL, (size_t)FRAME_SLOT * RING_FRAMES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (ring == MAP_FAILED)
		die_errno("mmap(PACKET_TX_RING)");
	/* Every slot holds the template once; a fresh run rewrites four words. */
	for (i = 0; i < RING_FRAMES; i++)
		memcpy(ring + (size_t)i * FRAME_SLOT + data_off, o->frame, o->len);
	while (sent < o->count) {
		unsigned n = 0;

		while (n < o->batch && sent + n < o->count) {
			struct tpacket2_hdr *h = (void *)(ring + (slot % RING_FRAMES) * FRAME_SLOT);

			if (__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) != TP_STATUS_AVAILABLE)
				break; /* the kernel still holds this slot: send what is queued */
			if (o->fresh)
				freshen((uint8_t *)h + data_off, o->frame, sent + n);
			h->tp_len = (uint32_t)o->len;
			__atomic_store_n(&h->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
			slot++;
			n++;
		}
		/* Blocking send: returns once the queued frames are transmitted. */
		if (send(fd, NULL, 0, 0) < 0) {
			if (errno != ENOBUFS && errno != EAGAIN && errno != EINTR)
				die_errno("send(PACKET_TX_RING)");
			(*retries)++;
		}
		sent += n;
		if (!n)
			(*retries)++;
	}
	/* Frames the last send left in flight are still "sent": wait for their
	 * slots so that the wall time covers their transmit. */
	for (i = 0; i < RING_FRAMES; i++) {
		struct tpacket2_hdr *h = (void *)(ring + (size_t)i * FRAME_SLOT);
		unsigned spins = 0;

		while (__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) == TP_STATUS_SEND_REQUEST || __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) == TP_STATUS_SENDING) {
			if (++spins > 1000000) {
				fprintf(stderr, "afpacket-tx: slot %u never completed\n", i);
				exit(1);
			}
			sched_yield();
		}
		if (h->tp_status == TP_STATUS_WRONG_FORMAT) {
			fprintf(stderr, "afpacket-tx: the kernel refused a frame (TP_STATUS_WRONG_FORMAT)\n");
			exit(1);
		}
	}
	return sent;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct sockaddr_ll sll;
	uint64_t t0, t1, sent, retries = 0;
	int fd;

	parse(argc, argv, &o);
	if (o.cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(o.cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set))
			die_errno("sched_setaffinity");
	}
	fd = open_socket(&o, &sll);
	t0 = now_ns();
	sent = o.ring ? send_ring(fd, &o, &retries) : send_mmsg(fd, &o, &retries);
	t1 = now_ns();
	printf("{\"method\":\"%s\",\"sent\":%llu,\"wall_ns\":%llu,\"retries\":%llu,\"cpu\":%d}\n", o.ring ? "ring" : "mmsg", (unsigned long long)sent,
	       (unsigned long long)(t1 - t0), (unsigned long long)retries, sched_getcpu());
	close(fd);
	return 0;
}
