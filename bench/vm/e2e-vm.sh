#!/usr/bin/env bash
# npm run bench:e2e:vm — bench:e2e inside a QEMU VM running Debian's kernel.
#
# Why: IPVS (one of bench:e2e's variants) needs CONFIG_IP_VS, which the
# development machine's kernel lacks. Debian's stock kernel has it as
# modules, so the whole bench — every variant, edgelb included — runs under
# that one kernel in one run, and the variants compare like for like.
#
# How: Debian's linux-image package (apt-get download, extracted, never
# installed) boots in QEMU (TCG: no KVM here) with a busybox-static
# initramfs; the VM's root is this host's root shared read-only over
# virtio-9p under a tmpfs overlay, with the package's modules at
# /lib/modules. bench/vm/guest.sh then runs the built dist/bench/e2e.js
# (build first: scripts/setup). The VM has no NIC: the lab's traffic stays
# in the guest's namespaces. Output comes back through a second (writable)
# 9p share; the console (serial) goes to stderr.
#
# Output: the inner bench's table, then its JSON as the last line with
# "vm":{"accel":"tcg","kernel":…,…} added. Under TCG every instruction is
# emulated: absolute figures mean nothing, only ratios within one run do.
#
# Environment: BENCH_E2E_SECONDS / BENCH_E2E_ROUNDS (passed in),
# EDGELB_VM_TIMEOUT (s, default 5400), EDGELB_VM_CPUS (2), EDGELB_VM_MEM (4096),
# EDGELB_VM_CACHE (~/.cache/edgelb/vm-kernel), EDGELB_VM_KERNEL_PKG
# (default: what linux-image-amd64 depends on), EDGELB_LAB_TIMEOUT_SCALE (5:
# the lab's time bounds, stretched for emulation; see src/lab/netns.ts).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${EDGELB_VM_CACHE:-$HOME/.cache/edgelb/vm-kernel}
TIMEOUT=${EDGELB_VM_TIMEOUT:-5400}
CPUS=${EDGELB_VM_CPUS:-2}
MEM=${EDGELB_VM_MEM:-4096}
say() { echo "bench:e2e:vm: $*" >&2; }

[ -n "${EDGELB_VM_SCRIPT:-}" ] || [ -f "$REPO/dist/bench/e2e.js" ] || { say "no dist/bench/e2e.js: build first (scripts/setup --build-only)"; exit 1; }
command -v qemu-system-x86_64 >/dev/null || { say "qemu-system-x86_64 not installed"; exit 1; }
mkdir -p "$CACHE"

# --- Debian packages: the kernel and busybox-static, downloaded once.
# The newest generic amd64 kernel the archive offers (bookworm: 6.12.x+deb12
# next to the stock 6.1). Not 6.1: its verifier rounds every BPF frame's
# stack up to 32 bytes, so edge_xdp (336 bytes) calling edge_sc_xmit_xdp
# (168) counts 352 + 192 = 544 > 512 and edge.o does not load ("combined
# stack size of 2 calls is 544. Too large"); the later kernels tried (6.12
# here, 6.18 on the build machines) round JITed frames to 16: 336 + 176 = 512.
PKG=${EDGELB_VM_KERNEL_PKG:-$(apt-cache search --names-only '^linux-image-[0-9.]+(-[0-9]+)?(\+deb[0-9]+)?-amd64$' | awk '{print $1}' | sort -V | tail -1)}
[ -n "$PKG" ] || { say "cannot find a linux-image-*-amd64 package (apt-cache search)"; exit 1; }
fetch_deb() { # $1 package, $2 extract dir
  if [ ! -d "$2" ]; then
    local deb
    deb=$(ls "$CACHE/$1"_*.deb 2>/dev/null | head -1 || true)
    if [ -z "$deb" ]; then
      say "downloading $1 from Debian's archive"
      (cd "$CACHE" && apt-get download "$1" >&2)
      deb=$(ls "$CACHE/$1"_*.deb | head -1)
    fi
    rm -rf "$2.tmp" && dpkg-deb -x "$deb" "$2.tmp" && mv "$2.tmp" "$2"
  fi
}
fetch_deb "$PKG" "$CACHE/$PKG"
fetch_deb busybox-static "$CACHE/busybox-static"
BB=$CACHE/busybox-static/bin/busybox
KROOT=$CACHE/$PKG
KVER=$(ls "$KROOT/lib/modules" | head -1)
VMLINUZ=$KROOT/boot/vmlinuz-$KVER
MODS=$KROOT/lib/modules/$KVER
# The host has no kmod; busybox's insmod cannot read compressed modules
# (newer Debian kernels ship .ko.xz): decompress once, then busybox's depmod
# writes modules.dep and .alias.
if [ ! -f "$MODS/modules.dep" ]; then
  find "$MODS" -name '*.ko.xz' -exec xz -d {} +
  find "$MODS" -name '*.ko.zst' -exec zstd -q -d --rm {} +
  "$BB" depmod -b "$KROOT" "$KVER"
fi

# --- initramfs: busybox, the modules to reach the 9p root, the init.
INITRD=$CACHE/initramfs-$KVER.cpio.gz
if [ ! -f "$INITRD" ] || [ "$REPO/bench/vm/initramfs-init" -nt "$INITRD" ]; then
  T=$(mktemp -d)
  mkdir -p "$T/bin" "$T/proc" "$T/sys" "$T/dev" "$T/lib/modules/$KVER"
  cp "$BB" "$T/bin/busybox"
  cp "$REPO/bench/vm/initramfs-init" "$T/init"
  cp "$MODS/modules.dep" "$MODS/modules.alias" "$T/lib/modules/$KVER/" 2>/dev/null || cp "$MODS/modules.dep" "$T/lib/modules/$KVER/"
  for m in virtio_pci 9pnet_virtio 9p overlay; do
    # A module and everything modules.dep lists for it.
    # (none when the kernel has it built in)
    line=$(grep -E "(^|/)$m\.ko:" "$MODS/modules.dep" || true)
    for f in $(echo "$line" | tr -d ':'); do
      mkdir -p "$T/lib/modules/$KVER/$(dirname "$f")"
      cp "$MODS/$f" "$T/lib/modules/$KVER/$f"
    done
  done
  (cd "$T" && find . | "$BB" cpio -o -H newc 2>/dev/null | gzip -1 >"$INITRD.tmp") && mv "$INITRD.tmp" "$INITRD"
  rm -rf "$T"
fi

# --- run: one VM, bounded by TIMEOUT, killed by its PID otherwise.
OUT=$(mktemp -d /tmp/edgelb-e2e-vm.XXXXXX)
chmod 777 "$OUT"
cat >"$OUT/env" <<ENV
REPO='$REPO'
KVER='$KVER'
VM_MODULES='$MODS'
BENCH_E2E_SECONDS='${BENCH_E2E_SECONDS:-5}'
BENCH_E2E_ROUNDS='${BENCH_E2E_ROUNDS:-3}'
BENCH_SCRIPT='${EDGELB_VM_SCRIPT:-dist/bench/e2e.js}'
EDGELB_LAB_TIMEOUT_SCALE='${EDGELB_LAB_TIMEOUT_SCALE:-5}'
ENV
say "kernel $KVER ($PKG), QEMU TCG, $CPUS vCPUs, $MEM MiB, timeout ${TIMEOUT}s; output in $OUT"
T0=$(date +%s)
qemu-system-x86_64 \
  -machine q35 -accel tcg,thread=multi -cpu max -smp "$CPUS" -m "$MEM" \
  -nic none -display none -no-reboot -serial stdio -monitor none \
  -kernel "$VMLINUZ" -initrd "$INITRD" \
  -append "console=ttyS0 quiet loglevel=4 panic=-1 mitigations=off" \
  -fsdev local,id=hostroot,path=/,readonly=on,security_model=none,multidevs=remap \
  -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
  -fsdev local,id=out,path="$OUT",security_model=none \
  -device virtio-9p-pci,fsdev=out,mount_tag=out \
  </dev/null >&2 &
QPID=$!
( sleep "$TIMEOUT"; say "timeout after ${TIMEOUT}s: killing QEMU (pid $QPID)"; kill "$QPID" 2>/dev/null ) &
WPID=$!
trap 'kill "$QPID" "$WPID" 2>/dev/null || true' INT TERM
QRC=0
wait "$QPID" || QRC=$?
kill "$WPID" 2>/dev/null || true
wait "$WPID" 2>/dev/null || true
ELAPSED=$(( $(date +%s) - T0 ))
if [ ! -f "$OUT/rc" ]; then
  say "the bench did not finish in the VM (QEMU exit $QRC after ${ELAPSED}s); console above, output in $OUT"
  exit 1
fi
RC=$(cat "$OUT/rc")
GUEST_KERNEL=$(cat "$OUT/kernel" 2>/dev/null || echo "$KVER")
# The table as the inner bench printed it; its JSON, with where it ran, last.
head -n -1 "$OUT/stdout"
tail -n 1 "$OUT/stdout" | VM_KERNEL="$GUEST_KERNEL" VM_PKG="$PKG" VM_CPUS="$CPUS" VM_MEM="$MEM" VM_S="$ELAPSED" \
  "$REPO/scripts/with-node" node -e '
    let s = "";
    process.stdin.on("data", (d) => (s += d)).on("end", () => {
      let j;
      try { j = JSON.parse(s); } catch { console.log(s.trim()); process.exit(1); }
      const e = process.env;
      j.vm = { accel: "tcg", emulator: "qemu-system-x86_64", kernel: e.VM_KERNEL, kernel_package: e.VM_PKG, vcpus: Number(e.VM_CPUS), mem_mib: Number(e.VM_MEM), wall_s: Number(e.VM_S),
        note: "QEMU TCG emulation: absolute figures are meaningless, only ratios within this run compare" };
      console.log(JSON.stringify(j));
    });'
exit "$RC"
