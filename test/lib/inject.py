#!/usr/bin/python3
"""Send hand-built frames from a network namespace and report what came back.

Reads one JSON object on stdin:
  {"iface": "eth0", "frames": ["<hex>", ...], "l3": false,
   "sniff": "<BPF filter>", "wait": 2.0}
- l3 false: each hex string is a whole Ethernet frame, sent as is (sendp);
  l3 true: each is an IPv4 packet, routed by the kernel (send).
- linear: N (l3 false only): each frame leaves as a non-linear skb whose
  linear head holds its first N bytes, the rest in page fragments (what
  GRO or a NIC's header split hands tc): sent through an AF_PACKET socket
  with a virtio-net header whose hdr_len is N. The kernel keeps the frame
  linear below a page (about 4 KB), so the frame must be longer, and the
  interface's MTU large enough.
- sniff: capture on iface while sending and for `wait` seconds after.
Prints one JSON line: {"sent": N, "captured": ["<hex>", ...]}.
Used by the tests (test/lib/inject.ts) with Debian's python3-scapy.
"""
import json
import socket
import struct
import sys
import time

from scapy.all import AsyncSniffer, Ether, IP, Raw, conf, send, sendp  # noqa: E402

conf.verb = 0
req = json.load(sys.stdin)
iface = req["iface"]
sniffer = None
if req.get("sniff"):
    sniffer = AsyncSniffer(iface=iface, filter=req["sniff"], store=True)
    sniffer.start()
    time.sleep(0.3)
SOL_PACKET = 263
PACKET_VNET_HDR = 15
paged = None
if req.get("linear"):
    paged = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    paged.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    paged.bind((iface, 0))
sent = 0
for h in req["frames"]:
    b = bytes.fromhex(h)
    if paged is not None:
        # struct virtio_net_hdr: flags, gso_type (none), hdr_len, gso_size, csum_start, csum_offset
        paged.send(struct.pack("<BBHHHH", 0, 0, int(req["linear"]), 0, 0, 0) + b)
    elif req.get("l3"):
        send(IP(b), iface=iface)
    else:
        sendp(Raw(b), iface=iface)
    sent += 1
captured = []
if sniffer is not None:
    time.sleep(float(req.get("wait", 2.0)))
    sniffer.stop()
    captured = [bytes(p).hex() for p in (sniffer.results or [])]
print(json.dumps({"sent": sent, "captured": captured}))
