/* CPU time of chosen NAPI threads' polls, for bench:e2e. Not shipped.
 *
 * bench:e2e gives each edge's uplink (a veth) threaded NAPI: its receive
 * path — the XDP program and its transmits, or GRO, the IP stack,
 * netfilter/IPVS, forwarding — runs in a kernel thread of its own. The
 * thread's scheduler run time is not the edge's cost, though: on a VM most of
 * it is waking up and switching in (microseconds per wake, one frame per
 * wake at lab rates), and without CONFIG_IRQ_TIME_ACCOUNTING it also carries
 * every softirq that runs when the thread re-enables bottom halves (other
 * devices' packets, TCP timers). This program sums only the polls:
 *
 *   sched_switch to a watched thread   starts an interval
 *   napi_poll in it (end of one poll)  closes it, starts the next
 *   softirq_entry / softirq_exit       pause / resume it
 *   switching away                     drops the open interval
 *
 * so per watched thread it counts the time from being switched in, or from
 * the previous poll, to the end of each poll, minus softirqs. User space puts
 * a zeroed value for every thread id it watches into poll_time. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct task_struct {
	int pid;
} __attribute__((preserve_access_index));

struct poll_time {
	__u64 ns;    /* summed poll time */
	__u64 polls; /* napi_poll events */
	__u64 open;  /* start of the running interval, 0 = none */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32); /* thread id */
	__type(value, struct poll_time);
} poll_time SEC(".maps");

static __always_inline struct poll_time *current_watched(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	return bpf_map_lookup_elem(&poll_time, &tid);
}

static __always_inline void close_interval(struct poll_time *p, __u64 now)
{
	if (p->open && now > p->open)
		p->ns += now - p->open;
	p->open = 0;
}

/* TP_PROTO(bool preempt, struct task_struct *prev, struct task_struct *next, ...) */
SEC("raw_tp/sched_switch")
int on_switch(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *prev = (void *)ctx->args[1], *next = (void *)ctx->args[2];
	__u32 prev_tid = BPF_CORE_READ(prev, pid), next_tid = BPF_CORE_READ(next, pid);
	struct poll_time *p = bpf_map_lookup_elem(&poll_time, &prev_tid);

	if (p)
		p->open = 0;
	p = bpf_map_lookup_elem(&poll_time, &next_tid);
	if (p)
		p->open = bpf_ktime_get_ns();
	return 0;
}

SEC("raw_tp/napi_poll")
int on_poll(void *ctx)
{
	struct poll_time *p = current_watched();
	__u64 now;

	if (!p)
		return 0;
	now = bpf_ktime_get_ns();
	close_interval(p, now);
	p->polls++;
	p->open = now;
	return 0;
}

SEC("raw_tp/softirq_entry")
int on_softirq_entry(void *ctx)
{
	struct poll_time *p = current_watched();

	if (p)
		close_interval(p, bpf_ktime_get_ns());
	return 0;
}

SEC("raw_tp/softirq_exit")
int on_softirq_exit(void *ctx)
{
	struct poll_time *p = current_watched();

	if (p)
		p->open = bpf_ktime_get_ns();
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
