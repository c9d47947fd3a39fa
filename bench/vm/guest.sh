#!/bin/bash
# PID 1 of the bench:e2e VM after switch_root (see bench/vm/e2e-vm.sh): the
# host's root read-only under a tmpfs overlay, Debian's kernel. Prepares what
# the lab expects of a host (mounts, modules, loopback) and runs
# `dist/bench/e2e.js`; its stdout, stderr and exit code go to the host's
# output directory, then the VM powers off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/run/edgelb-vm/bin
export HOME=/root
OUT=/run/edgelb-vm/out
# shellcheck disable=SC1091
. "$OUT/env"

off() {
  sync
  /run/edgelb-vm/bin/poweroff -f
  sleep 30
}
trap off EXIT

mkdir -p /dev/pts /dev/shm
# devtmpfs has no /dev/fd (bash's process substitution needs it) nor std* links.
ln -sfn /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
mount -t devpts -o mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 shm /dev/shm
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
# The sandbox machinery's mount point on the host: nothing here reads it.
[ -d /mnt/sandboxing ] && mount -t tmpfs -o size=4k,ro none /mnt/sandboxing
mkdir -p /run/netns /var/run
hostname edgelb-vm
ip link set lo up

# What the lab and the variants use, loaded up front (busybox modprobe also
# answers the kernel's own requests, but an explicit list fails loudly).
mods="veth bridge ipip tunnel4 ip_tunnel sch_ingress cls_bpf act_bpf
  nf_tables nf_conntrack nf_nat nft_chain_nat nft_nat nft_masq nft_ct nft_hash
  nft_numgen nft_fwd_netdev nf_dup_netdev nft_reject nft_reject_inet
  ip_vs ip_vs_rr ip_vs_wrr ip_vs_sh xt_conntrack iptable_nat
  iptable_filter ip6_tables ip6table_filter tun"
for m in $mods; do
  modprobe "$m" 2>/dev/null || echo "edgelb-vm: modprobe $m failed (maybe built in)" >&2
done
ulimit -l unlimited
ulimit -n 1048576

echo "edgelb-vm: kernel $(uname -r), $(nproc) CPUs, modules: $(cut -d' ' -f1 /proc/modules | tr '\n' ' ')" >&2
cd "$REPO" || exit 1
# The lab removes its state (logs included) when it is torn down, and the
# guest's /run dies with it: keep copies of the agents' logs on the host.
mkdir -p "$OUT/logs"
(
  while sleep 5; do
    for f in /run/edgelb-lab/*/*/agent.log; do
      [ -f "$f" ] && cp "$f" "$OUT/logs/$(echo "${f#/run/edgelb-lab/}" | tr / _)"
    done
  done
) &
COPIER=$!
set +e
env BENCH_E2E_SECONDS="$BENCH_E2E_SECONDS" BENCH_E2E_ROUNDS="$BENCH_E2E_ROUNDS" EDGELB_LAB_TIMEOUT_SCALE="$EDGELB_LAB_TIMEOUT_SCALE" \
  scripts/with-node node "${BENCH_SCRIPT:-dist/bench/e2e.js}" >"$OUT/stdout" 2> >(tee "$OUT/stderr" >&2)
RC=$?
# Stop the copier first: waiting for it (it never ends) kept the VM up.
kill "$COPIER" 2>/dev/null
wait "$COPIER" 2>/dev/null
uname -r >"$OUT/kernel"
echo "$RC" >"$OUT/rc"
