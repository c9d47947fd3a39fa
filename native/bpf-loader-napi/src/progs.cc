// Program operations on raw fds: BPF_PROG_TEST_RUN (single call and a timed
// loop for benchmarks), XDP and tc attach/detach, program info, interface
// index lookup and switching the calling thread's network namespace.
#include "common.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <time.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace bpfl {

namespace {

std::string FdOp(const char *op, int fd) { return std::string(op) + "(fd " + std::to_string(fd) + ")"; }

// Optional members of an options object.
bool OptU32(Napi::Env env, Napi::Object o, const char *key, uint32_t *out) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return false;
  if (!v.IsNumber()) ThrowType(env, std::string(key) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 4294967295.0)) ThrowRange(env, std::string(key) + " out of range");
  *out = static_cast<uint32_t>(d);
  return true;
}

bool OptBuffer(Napi::Env env, Napi::Object o, const char *key, Napi::Buffer<uint8_t> *out) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return false;
  if (!v.IsBuffer()) ThrowType(env, std::string(key) + " must be a Buffer");
  *out = v.As<Napi::Buffer<uint8_t>>();
  return true;
}

// testRun(fd, { data, dataSizeOut?, repeat?, flags?, ctxIn?, ctxSizeOut?,
//               cpu?, batchSize? }) -> { retval, dataOut, duration, ctxOut? }
Napi::Value TestRun(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  if (info.Length() < 2 || !info[1].IsObject()) ThrowType(env, "testRun options must be an object");
  Napi::Object o = info[1].As<Napi::Object>();
  Napi::Buffer<uint8_t> data;
  if (!OptBuffer(env, o, "data", &data)) ThrowType(env, "testRun: data must be a Buffer");
  uint32_t size_out = static_cast<uint32_t>(data.Length()) + 512;
  OptU32(env, o, "dataSizeOut", &size_out);
  uint32_t repeat = 1, flags = 0, cpu = 0, batch = 0, ctx_size_out = 0;
  OptU32(env, o, "repeat", &repeat);
  OptU32(env, o, "flags", &flags);
  OptU32(env, o, "cpu", &cpu);
  OptU32(env, o, "batchSize", &batch);
  Napi::Buffer<uint8_t> ctx_in;
  bool has_ctx = OptBuffer(env, o, "ctxIn", &ctx_in);
  OptU32(env, o, "ctxSizeOut", &ctx_size_out);

  // Live-frame mode sends the frames out for real and returns no data.
  bool live = flags & BPF_F_TEST_XDP_LIVE_FRAMES;
  std::vector<uint8_t> out(live ? 0 : size_out);
  std::vector<uint8_t> ctx_out(ctx_size_out);
  LIBBPF_OPTS(bpf_test_run_opts, opts);
  opts.data_in = data.Data();
  opts.data_size_in = static_cast<uint32_t>(data.Length());
  if (!live) {
    opts.data_out = out.data();
    opts.data_size_out = size_out;
  }
  if (has_ctx) {
    opts.ctx_in = ctx_in.Data();
    opts.ctx_size_in = static_cast<uint32_t>(ctx_in.Length());
  }
  if (ctx_size_out) {
    opts.ctx_out = ctx_out.data();
    opts.ctx_size_out = ctx_size_out;
  }
  opts.repeat = static_cast<int>(repeat);
  opts.flags = flags;
  opts.cpu = cpu;
  opts.batch_size = batch;
  ResetLog(false);
  // With repeat > 1 the kernel stops early with EINTR whenever the thread
  // has a signal or task work pending (Node's main thread gets io_uring task
  // work from libuv all the time), after running the program some of the
  // times -- a retry would not be equivalent (map side effects, live frames
  // already sent). So the syscall runs on a short-lived thread of its own,
  // with every signal blocked. It inherits the caller's network namespace.
  // A single run never sees EINTR (the kernel checks for pending work only
  // between repetitions); skip the thread, it costs tens of microseconds.
  // errno is per thread: keep the runner's (libbpf returns -1 for EPERM,
  // so -ret alone cannot tell EPERM from "look at errno").
  int ret = 0, err = 0;
  if (repeat <= 1) {
    ret = bpf_prog_test_run_opts(fd, &opts);
    err = errno;
  } else {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    std::thread runner([&] {
      ret = bpf_prog_test_run_opts(fd, &opts);
      err = errno;
    });
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    runner.join();
  }
  if (ret) {
    Napi::Error e = MakeErrnoError(env, ret < -1 ? -ret : err, FdOp("bpf_prog_test_run_opts", fd));
    if (-ret == ENOSPC) e.Value().Set("hint", "the output packet is larger than dataSizeOut");
    throw e;
  }
  Napi::Object r = Napi::Object::New(env);
  r.Set("retval", Napi::Number::New(env, opts.retval));
  r.Set("duration", Napi::Number::New(env, opts.duration));
  uint32_t n = live ? 0 : std::min(opts.data_size_out, size_out);
  r.Set("dataOut", Napi::Buffer<uint8_t>::Copy(env, out.data(), n));
  if (ctx_size_out)
    r.Set("ctxOut", Napi::Buffer<uint8_t>::Copy(env, ctx_out.data(), std::min(opts.ctx_size_out, ctx_size_out)));
  return r;
}

// With repeat=1 the kernel checks for pending signals only before running
// the program, so an EINTR'd call did nothing and is simply repeated.
constexpr int kEintrRetries = 100;

int TestRunRetrying(int fd, struct bpf_test_run_opts *opts) {
  uint32_t size_out = opts->data_size_out, ctx_size_out = opts->ctx_size_out;
  int ret = 0;
  for (int i = 0; i < kEintrRetries; i++) {
    opts->data_size_out = size_out;
    opts->ctx_size_out = ctx_size_out;
    ret = bpf_prog_test_run_opts(fd, opts);
    if (ret != -EINTR) break;
  }
  return ret;
}

double NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

// testRunLoop(fd, data, count, { flags?, ctxIn?, copyOut? })
//   -> { count, totalNs, kernelNs, retval, retvalMismatches }
// count calls with repeat=1, so every call starts from the original packet
// (with repeat>1 the kernel feeds a rewriting program its own output).
// totalNs is wall time around the whole loop (CLOCK_MONOTONIC), kernelNs the
// sum of the kernel's per-call duration; no JS runs inside the loop.
// retval is the first call's verdict and retvalMismatches counts calls that
// returned something else.
Napi::Value TestRunLoop(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  auto data = ArgBuffer(info, 1, "data");
  uint32_t count = ArgU32(info, 2, "count");
  uint32_t flags = 0;
  bool copy_out = false;
  Napi::Buffer<uint8_t> ctx_in;
  bool has_ctx = false;
  if (HasArg(info, 3)) {
    if (!info[3].IsObject()) ThrowType(env, "testRunLoop options must be an object");
    Napi::Object o = info[3].As<Napi::Object>();
    OptU32(env, o, "flags", &flags);
    has_ctx = OptBuffer(env, o, "ctxIn", &ctx_in);
    Napi::Value c = o.Get("copyOut");
    copy_out = c.IsBoolean() && c.As<Napi::Boolean>().Value();
  }
  std::vector<uint8_t> out(copy_out ? data.Length() + 512 : 0);
  double kernel = 0;
  uint32_t first = 0, mismatches = 0;
  ResetLog(false);
  double t0 = NowNs();
  for (uint32_t i = 0; i < count; i++) {
    LIBBPF_OPTS(bpf_test_run_opts, opts);
    opts.data_in = data.Data();
    opts.data_size_in = static_cast<uint32_t>(data.Length());
    if (copy_out) {
      opts.data_out = out.data();
      opts.data_size_out = static_cast<uint32_t>(out.size());
    }
    if (has_ctx) {
      opts.ctx_in = ctx_in.Data();
      opts.ctx_size_in = static_cast<uint32_t>(ctx_in.Length());
    }
    opts.repeat = 1;
    opts.flags = flags;
    int ret = TestRunRetrying(fd, &opts);
    if (ret) {
      Napi::Error e = MakeErrnoError(env, ret < -1 ? -ret : errno, FdOp("bpf_prog_test_run_opts", fd));
      e.Value().Set("iteration", Napi::Number::New(env, i));
      throw e;
    }
    kernel += opts.duration;
    if (i == 0) first = opts.retval;
    else if (opts.retval != first) mismatches++;
  }
  double total = NowNs() - t0;
  Napi::Object r = Napi::Object::New(env);
  r.Set("count", Napi::Number::New(env, count));
  r.Set("totalNs", Napi::Number::New(env, total));
  r.Set("kernelNs", Napi::Number::New(env, kernel));
  r.Set("retval", Napi::Number::New(env, first));
  r.Set("retvalMismatches", Napi::Number::New(env, mismatches));
  return r;
}

std::string Hex(const uint8_t *p, size_t n) {
  static const char *d = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; i++) {
    s += d[p[i] >> 4];
    s += d[p[i] & 15];
  }
  return s;
}

// progInfo(fd) -> { type, typeName, id, name, tag, runTimeNs, runCnt,
//                   xlatedLen, jitedLen, verifiedInsns, mapIds }
Napi::Value ProgInfo(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  struct bpf_prog_info pi;
  uint32_t map_ids[64];
  memset(&pi, 0, sizeof pi);
  pi.nr_map_ids = 64;
  pi.map_ids = reinterpret_cast<uint64_t>(map_ids);
  uint32_t len = sizeof pi;
  ResetLog(false);
  int ret = bpf_obj_get_info_by_fd(fd, &pi, &len);
  if (ret) ThrowLibbpf(env, ret, FdOp("bpf_obj_get_info_by_fd", fd));
  Napi::Object r = Napi::Object::New(env);
  r.Set("type", Napi::Number::New(env, pi.type));
  const char *tn = libbpf_bpf_prog_type_str(static_cast<enum bpf_prog_type>(pi.type));
  r.Set("typeName", tn ? tn : "unknown");
  r.Set("id", Napi::Number::New(env, pi.id));
  r.Set("name", Napi::String::New(env, pi.name));
  r.Set("tag", Napi::String::New(env, Hex(pi.tag, sizeof pi.tag)));
  r.Set("runTimeNs", Napi::Number::New(env, static_cast<double>(pi.run_time_ns)));
  r.Set("runCnt", Napi::Number::New(env, static_cast<double>(pi.run_cnt)));
  r.Set("xlatedLen", Napi::Number::New(env, pi.xlated_prog_len));
  r.Set("jitedLen", Napi::Number::New(env, pi.jited_prog_len));
  r.Set("verifiedInsns", Napi::Number::New(env, pi.verified_insns));
  Napi::Array ids = Napi::Array::New(env);
  for (uint32_t i = 0; i < pi.nr_map_ids && i < 64; i++) ids.Set(i, Napi::Number::New(env, map_ids[i]));
  r.Set("mapIds", ids);
  return r;
}

Napi::Value ProgGetFdById(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint32_t id = ArgU32(info, 0, "program id");
  ResetLog(false);
  int fd = bpf_prog_get_fd_by_id(id);
  if (fd < 0) ThrowLibbpf(env, fd, "bpf_prog_get_fd_by_id(" + std::to_string(id) + ")");
  return Napi::Number::New(env, fd);
}

Napi::Value IfNameToIndex(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string name = ArgString(info, 0, "interface name");
  unsigned idx = if_nametoindex(name.c_str());
  if (!idx) ThrowErrno(env, errno ? errno : ENODEV, "if_nametoindex(" + name + ")");
  return Napi::Number::New(env, idx);
}

// xdpAttach(ifindex, fd, flags, expectedOldFd?)
Napi::Value XdpAttach(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int ifindex = static_cast<int>(ArgU32(info, 0, "ifindex"));
  int fd = ArgFd(info, 1, "fd");
  uint32_t flags = ArgU32(info, 2, "flags");
  LIBBPF_OPTS(bpf_xdp_attach_opts, opts);
  if (HasArg(info, 3)) {
    opts.old_prog_fd = ArgFd(info, 3, "old fd");
    flags |= XDP_FLAGS_REPLACE;
  }
  ResetLog(false);
  int ret = bpf_xdp_attach(ifindex, fd, flags, &opts);
  if (ret) ThrowLibbpf(env, ret, "bpf_xdp_attach(ifindex " + std::to_string(ifindex) + ")");
  return env.Undefined();
}

// xdpDetach(ifindex, flags)
Napi::Value XdpDetach(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int ifindex = static_cast<int>(ArgU32(info, 0, "ifindex"));
  uint32_t flags = ArgU32(info, 1, "flags");
  ResetLog(false);
  int ret = bpf_xdp_detach(ifindex, flags, nullptr);
  if (ret) ThrowLibbpf(env, ret, "bpf_xdp_detach(ifindex " + std::to_string(ifindex) + ")");
  return env.Undefined();
}

// xdpQuery(ifindex) -> { progId, drvProgId, skbProgId, hwProgId, attachMode }
Napi::Value XdpQuery(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int ifindex = static_cast<int>(ArgU32(info, 0, "ifindex"));
  LIBBPF_OPTS(bpf_xdp_query_opts, opts);
  ResetLog(false);
  int ret = bpf_xdp_query(ifindex, 0, &opts);
  if (ret) ThrowLibbpf(env, ret, "bpf_xdp_query(ifindex " + std::to_string(ifindex) + ")");
  Napi::Object r = Napi::Object::New(env);
  r.Set("progId", Napi::Number::New(env, opts.prog_id));
  r.Set("drvProgId", Napi::Number::New(env, opts.drv_prog_id));
  r.Set("skbProgId", Napi::Number::New(env, opts.skb_prog_id));
  r.Set("hwProgId", Napi::Number::New(env, opts.hw_prog_id));
  r.Set("attachMode", Napi::Number::New(env, opts.attach_mode));
  return r;
}

enum bpf_tc_attach_point ArgTcPoint(const Napi::CallbackInfo &info, size_t i) {
  std::string p = ArgString(info, i, "tc attach point");
  if (p == "ingress") return BPF_TC_INGRESS;
  if (p == "egress") return BPF_TC_EGRESS;
  ThrowRange(info.Env(), "tc attach point must be 'ingress' or 'egress', got '" + p + "'");
}

std::string TcOp(const char *op, int ifindex, enum bpf_tc_attach_point p) {
  return std::string(op) + "(ifindex " + std::to_string(ifindex) + " " + (p == BPF_TC_INGRESS ? "ingress" : "egress") + ")";
}

// tcAttach(ifindex, 'ingress'|'egress', fd, priority, handle, replace)
//   -> { priority, handle, progId }
// Creates the clsact qdisc when missing. priority/handle 0 let the kernel
// choose; the chosen values come back and identify the filter for detach.
Napi::Value TcAttach(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int ifindex = static_cast<int>(ArgU32(info, 0, "ifindex"));
  enum bpf_tc_attach_point point = ArgTcPoint(info, 1);
  int fd = ArgFd(info, 2, "fd");
  uint32_t prio = HasArg(info, 3) ? ArgU32(info, 3, "priority") : 0;
  uint32_t handle = HasArg(info, 4) ? ArgU32(info, 4, "handle") : 0;
  bool replace = info.Length() > 5 && info[5].IsBoolean() && info[5].As<Napi::Boolean>().Value();
  if (prio > 0xffff) ThrowRange(env, "tc priority must be <= 65535");
  ResetLog(false);
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = point);
  int ret = bpf_tc_hook_create(&hook);
  if (ret && ret != -EEXIST) ThrowLibbpf(env, ret, TcOp("bpf_tc_hook_create", ifindex, point));
  LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = fd, .flags = replace ? static_cast<uint32_t>(BPF_TC_F_REPLACE) : 0u, .handle = handle,
              .priority = prio);
  ret = bpf_tc_attach(&hook, &opts);
  if (ret) ThrowLibbpf(env, ret, TcOp("bpf_tc_attach", ifindex, point));
  Napi::Object r = Napi::Object::New(env);
  r.Set("priority", Napi::Number::New(env, opts.priority));
  r.Set("handle", Napi::Number::New(env, opts.handle));
  r.Set("progId", Napi::Number::New(env, opts.prog_id));
  return r;
}

// tcDetach(ifindex, 'ingress'|'egress', priority, handle)
Napi::Value TcDetach(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int ifindex = static_cast<int>(ArgU32(info, 0, "ifindex"));
  enum bpf_tc_attach_point point = ArgTcPoint(info, 1);
  uint32_t prio = ArgU32(info, 2, "priority");
  uint32_t handle = ArgU32(info, 3, "handle");
  ResetLog(false);
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = point);
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = handle, .priority = prio);
  int ret = bpf_tc_detach(&hook, &opts);
  if (ret) ThrowLibbpf(env, ret, TcOp("bpf_tc_detach", ifindex, point));
  return env.Undefined();
}

// tcQuery(ifindex, 'ingress'|'egress', priority, handle) -> progId | null
Napi::Value TcQuery(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int ifindex = static_cast<int>(ArgU32(info, 0, "ifindex"));
  enum bpf_tc_attach_point point = ArgTcPoint(info, 1);
  uint32_t prio = ArgU32(info, 2, "priority");
  uint32_t handle = ArgU32(info, 3, "handle");
  ResetLog(false);
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = point);
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = handle, .priority = prio);
  int ret = bpf_tc_query(&hook, &opts);
  if (ret == -ENOENT || ret == -EINVAL) return env.Null();
  if (ret) ThrowLibbpf(env, ret, TcOp("bpf_tc_query", ifindex, point));
  return Napi::Number::New(env, opts.prog_id);
}

// tcHookDestroy(ifindex): removes the clsact qdisc with all its filters.
Napi::Value TcHookDestroy(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int ifindex = static_cast<int>(ArgU32(info, 0, "ifindex"));
  ResetLog(false);
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex,
              .attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
  int ret = bpf_tc_hook_destroy(&hook);
  if (ret && ret != -ENOENT && ret != -EINVAL) ThrowLibbpf(env, ret, "bpf_tc_hook_destroy(ifindex " + std::to_string(ifindex) + ")");
  return Napi::Boolean::New(env, ret == 0);
}

// rawTracepointOpen(name, fd) -> link fd: attaches a loaded raw_tp program
// to the kernel tracepoint `name` (BPF_RAW_TRACEPOINT_OPEN); closing the
// returned fd detaches it.
Napi::Value RawTracepointOpen(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string name = ArgString(info, 0, "tracepoint name");
  int fd = ArgFd(info, 1, "fd");
  ResetLog(false);
  int link = bpf_raw_tracepoint_open(name.c_str(), fd);
  if (link < 0) ThrowLibbpf(env, link, "bpf_raw_tracepoint_open(" + name + ")");
  return Napi::Number::New(env, link);
}

// setNetns(fd): moves the calling (JS main) thread into the network
// namespace behind fd (from /run/netns/NAME or /proc/thread-self/ns/net).
// libuv's worker threads are not affected.
Napi::Value SetNetns(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "netns fd");
  if (setns(fd, CLONE_NEWNET)) ThrowErrno(env, errno, FdOp("setns", fd));
  return env.Undefined();
}

}  // namespace

void InitProgs(Napi::Env env, Napi::Object exports) {
  exports.Set("testRun", Napi::Function::New<TestRun>(env, "testRun"));
  exports.Set("testRunLoop", Napi::Function::New<TestRunLoop>(env, "testRunLoop"));
  exports.Set("progInfo", Napi::Function::New<ProgInfo>(env, "progInfo"));
  exports.Set("progGetFdById", Napi::Function::New<ProgGetFdById>(env, "progGetFdById"));
  exports.Set("ifNameToIndex", Napi::Function::New<IfNameToIndex>(env, "ifNameToIndex"));
  exports.Set("xdpAttach", Napi::Function::New<XdpAttach>(env, "xdpAttach"));
  exports.Set("xdpDetach", Napi::Function::New<XdpDetach>(env, "xdpDetach"));
  exports.Set("xdpQuery", Napi::Function::New<XdpQuery>(env, "xdpQuery"));
  exports.Set("tcAttach", Napi::Function::New<TcAttach>(env, "tcAttach"));
  exports.Set("tcDetach", Napi::Function::New<TcDetach>(env, "tcDetach"));
  exports.Set("tcQuery", Napi::Function::New<TcQuery>(env, "tcQuery"));
  exports.Set("tcHookDestroy", Napi::Function::New<TcHookDestroy>(env, "tcHookDestroy"));
  exports.Set("setNetns", Napi::Function::New<SetNetns>(env, "setNetns"));
  exports.Set("rawTracepointOpen", Napi::Function::New<RawTracepointOpen>(env, "rawTracepointOpen"));
}

}  // namespace bpfl
