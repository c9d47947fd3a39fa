#!/usr/bin/python3
"""Send hand-built frames from a network namespace and report what came back.

Reads one JSON object on stdin:
  {"iface": "eth0", "frames": ["<hex>", ...], "l3": false,
   "sniff": "<BPF filter>", "wait": 2.0}
- l3 false: each hex string is a whole Ethernet frame, sent as is (sendp);
  l3 true: each is an IPv4 packet, routed by the kernel (send).
- sniff: capture on iface while sending and for `wait` seconds after.
Prints one JSON line: {"sent": N, "captured": ["<hex>", ...]}.
Used by the tests (test/lib/inject.ts) with Debian's python3-scapy.
"""
import json
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
sent = 0
for h in req["frames"]:
    b = bytes.fromhex(h)
    if req.get("l3"):
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
