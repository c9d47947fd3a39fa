/* Softirq time that runs inside chosen threads, for bench:e2e. Not shipped.
 *
 * bench:e2e charges an edge the run time of its uplink's NAPI kernel thread.
 * Without CONFIG_IRQ_TIME_ACCOUNTING the kernel also charges to that thread
 * every softirq it happens to run when it re-enables bottom halves (other
 * devices' receive work, TCP timers of the client and pods, RCU) — work that
 * is not the edge's. The raw tracepoints softirq_entry/softirq_exit bracket
 * each softirq vector; their time is summed per watched thread so user space
 * can subtract it. (The NAPI poll itself runs with bottom halves disabled,
 * outside any softirq bracket, so none of the edge's own work is removed.)
 *
 * User space puts a zero for every thread id it watches into softirq_ns. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} softirq_start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);   /* thread id */
	__type(value, __u64); /* ns of softirq run inside it */
} softirq_ns SEC(".maps");

SEC("raw_tp/softirq_entry")
int softirq_enter(void *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid(), zero = 0;
	__u64 *t;

	if (!bpf_map_lookup_elem(&softirq_ns, &tid))
		return 0;
	t = bpf_map_lookup_elem(&softirq_start, &zero);
	if (t)
		*t = bpf_ktime_get_ns();
	return 0;
}

SEC("raw_tp/softirq_exit")
int softirq_leave(void *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid(), zero = 0;
	__u64 *t = bpf_map_lookup_elem(&softirq_start, &zero), *acc;
	__u64 now = bpf_ktime_get_ns();

	if (!t || !*t)
		return 0;
	acc = bpf_map_lookup_elem(&softirq_ns, &tid);
	if (acc && now > *t)
		__sync_fetch_and_add(acc, now - *t);
	*t = 0;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
