/* edgelb-probe: does the path to a Kubernetes node carry our DSR marking?
 *
 * Sends one UDP datagram to NODE:PORT (default 4790) carrying the probe
 * marker (bpf/include/dsr_option.h, src/probe/wire.ts) unless --no-option:
 *   NODE an IPv4 address: the DSR IPv4 option with VIP 0.0.0.0 port 0
 *   NODE an IPv6 address: the 24-byte Destination Options DSR header
 *                         directly after the fixed header, VIP :: port 0
 * The payload is
 *   "ELBPROBE" | nonce (8 bytes) | flag (1 byte, sent as 0)
 * The node's tc program sets the flag to 1 when the option arrived; the
 * node's responder echoes the datagram. Prints one JSON line:
 *   {"target":"…","option":true,"reply":true,"optionSeen":true,"rttUs":123}
 * and exits 0 (2 on bad usage, 1 on a local error). Node.js cannot set
 * IP_OPTIONS (or IPV6_DSTOPTS, which needs CAP_NET_RAW) on a socket,
 * hence this helper.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAGIC "ELBPROBE"
#define MAGIC_LEN 8
#define PAYLOAD_LEN (MAGIC_LEN + 8 + 1)

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + ts.tv_nsec / 1000;
}

static int usage(void)
{
	fprintf(stderr, "usage: edgelb-probe NODE_IP [--port N] [--timeout-ms N] [--source IP] [--no-option]\n"
			"  NODE_IP and --source: both IPv4 or both IPv6\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *target = NULL, *source = NULL;
	int port = 4790, timeout_ms = 500, with_option = 1;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--port") && i + 1 < argc)
			port = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--timeout-ms") && i + 1 < argc)
			timeout_ms = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--source") && i + 1 < argc)
			source = argv[++i];
		else if (!strcmp(argv[i], "--no-option"))
			with_option = 0;
		else if (argv[i][0] != '-' && !target)
			target = argv[i];
		else
			return usage();
	}
	union {
		struct sockaddr sa;
		struct sockaddr_in v4;
		struct sockaddr_in6 v6;
	} dst = { 0 }, src = { 0 };
	socklen_t alen;
	int family;

	if (!target || port <= 0 || port > 65535 || timeout_ms <= 0)
		return usage();
	if (inet_pton(AF_INET, target, &dst.v4.sin_addr) == 1) {
		family = AF_INET;
		dst.v4.sin_family = AF_INET;
		dst.v4.sin_port = htons(port);
		alen = sizeof(dst.v4);
	} else if (inet_pton(AF_INET6, target, &dst.v6.sin6_addr) == 1) {
		family = AF_INET6;
		dst.v6.sin6_family = AF_INET6;
		dst.v6.sin6_port = htons(port);
		alen = sizeof(dst.v6);
	} else {
		return usage();
	}
	if (source) {
		src.sa.sa_family = family;
		if (inet_pton(family, source, family == AF_INET ? (void *)&src.v4.sin_addr : (void *)&src.v6.sin6_addr) != 1)
			return usage();
	}

	int fd = socket(family, SOCK_DGRAM, 0);
	if (fd < 0) {
		fprintf(stderr, "edgelb-probe: socket: %s\n", strerror(errno));
		return 1;
	}
	if (source && bind(fd, &src.sa, alen) < 0) {
		fprintf(stderr, "edgelb-probe: bind %s: %s\n", source, strerror(errno));
		return 1;
	}
	if (with_option && family == AF_INET) {
		/* type 0x9e, len 8, port 0, address 0.0.0.0: the probe marker. */
		unsigned char opt[8] = { 0x9e, 8, 0, 0, 0, 0, 0, 0 };
		if (setsockopt(fd, IPPROTO_IP, IP_OPTIONS, opt, sizeof(opt)) < 0) {
			fprintf(stderr, "edgelb-probe: IP_OPTIONS: %s\n", strerror(errno));
			return 1;
		}
	} else if (with_option) {
		/* The Destination Options DSR header with VIP :: port 0. The
		 * kernel fills in byte 0 (next header: UDP); without a routing
		 * header IPV6_DSTOPTS goes right after the fixed header, where
		 * the node looks for it. Bytes 2-3 option 0x5e, 18 data bytes;
		 * 4-5 port, 6-21 address (zero); 22-23 PadN of length 0. */
		unsigned char hdr[24] = { 0, 2, 0x5e, 18 };
		hdr[22] = 0x01;
		hdr[23] = 0x00;
		if (setsockopt(fd, IPPROTO_IPV6, IPV6_DSTOPTS, hdr, sizeof(hdr)) < 0) {
			fprintf(stderr, "edgelb-probe: IPV6_DSTOPTS: %s\n", strerror(errno));
			return 1;
		}
	}
	if (connect(fd, &dst.sa, alen) < 0) {
		fprintf(stderr, "edgelb-probe: connect %s: %s\n", target, strerror(errno));
		return 1;
	}

	unsigned char msg[PAYLOAD_LEN], reply[64];
	memcpy(msg, MAGIC, MAGIC_LEN);
	if (getrandom(msg + MAGIC_LEN, 8, 0) != 8) {
		fprintf(stderr, "edgelb-probe: getrandom: %s\n", strerror(errno));
		return 1;
	}
	msg[PAYLOAD_LEN - 1] = 0;

	uint64_t start = now_us(), deadline = start + (uint64_t)timeout_ms * 1000;
	int got = 0, seen = 0;
	if (send(fd, msg, sizeof(msg), 0) < 0) {
		/* ECONNREFUSED from an earlier ICMP, EHOSTUNREACH…: no reply. */
		goto out;
	}
	for (;;) {
		uint64_t t = now_us();
		if (t >= deadline)
			break;
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int rc = poll(&p, 1, (int)((deadline - t + 999) / 1000));
		if (rc <= 0)
			break;
		ssize_t n = recv(fd, reply, sizeof(reply), 0);
		if (n < 0)
			break; /* ICMP port unreachable surfaces here */
		/* Ignore anything that is not the echo of this probe. */
		if (n == PAYLOAD_LEN && !memcmp(reply, msg, MAGIC_LEN + 8)) {
			got = 1;
			seen = reply[PAYLOAD_LEN - 1] == 1;
			break;
		}
	}
out:
	printf("{\"target\":\"%s\",\"option\":%s,\"reply\":%s,\"optionSeen\":%s,\"rttUs\":%llu}\n", target,
	       with_option ? "true" : "false", got ? "true" : "false", seen ? "true" : "false",
	       got ? (unsigned long long)(now_us() - start) : 0ULL);
	close(fd);
	return 0;
}
