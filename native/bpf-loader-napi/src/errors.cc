#include "common.h"

#include <bpf/libbpf.h>

#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <vector>

namespace bpfl {

namespace {

// Verifier logs of big programs run to megabytes; keep the tail beyond this
// (the end of a verifier log is where the reason for rejection is).
constexpr size_t kMaxLog = 8u << 20;

// Per thread: libbpf calls its print callback on the calling thread, and
// worker threads may load the addon too.
thread_local std::string g_log;
thread_local bool g_debug = false;

int PrintCallback(enum libbpf_print_level level, const char *fmt, va_list args) {
  if (level == LIBBPF_DEBUG && !g_debug) return 0;
  va_list copy;
  va_copy(copy, args);
  char small[1024];
  int n = vsnprintf(small, sizeof small, fmt, copy);
  va_end(copy);
  if (n < 0) return 0;
  if (static_cast<size_t>(n) < sizeof small) {
    g_log.append(small, n);
  } else {
    std::vector<char> big(static_cast<size_t>(n) + 1);
    vsnprintf(big.data(), big.size(), fmt, args);
    g_log.append(big.data(), n);
  }
  if (g_log.size() > kMaxLog) g_log.erase(0, g_log.size() - kMaxLog);
  return 0;
}

}  // namespace

void InstallPrintCallback() { libbpf_set_print(PrintCallback); }

void ResetLog(bool include_debug) {
  g_log.clear();
  g_debug = include_debug;
}

const std::string &CapturedLog() { return g_log; }

std::string ErrnoName(int err) {
  switch (err) {
    case 512: return "ERESTARTSYS";
    case 524: return "ENOTSUPP";
    case 525: return "ETOOSMALL";
  }
  const char *name = strerrorname_np(err);
  if (name) return name;
  return "E" + std::to_string(err);
}

Napi::Error MakeErrnoError(Napi::Env env, int err, const std::string &op) {
  std::string code = ErrnoName(err);
  std::string text = err == 524 ? "Operation not supported by the kernel for this object" : strerror(err);
  Napi::Error e = Napi::Error::New(env, op + ": " + text + " (" + code + ")");
  Napi::Object o = e.Value();
  o.Set("errno", Napi::Number::New(env, err));
  o.Set("code", Napi::String::New(env, code));
  o.Set("syscall", Napi::String::New(env, op));
  if (!g_log.empty()) o.Set("libbpfLog", Napi::String::New(env, g_log));
  return e;
}

void ThrowErrno(Napi::Env env, int err, const std::string &op) { throw MakeErrnoError(env, err, op); }

void ThrowLibbpf(Napi::Env env, int ret, const std::string &op) {
  int err = ret < -1 ? -ret : (errno ? errno : EINVAL);
  ThrowErrno(env, err, op);
}

void ThrowType(Napi::Env env, const std::string &msg) { throw Napi::TypeError::New(env, msg); }
void ThrowRange(Napi::Env env, const std::string &msg) { throw Napi::RangeError::New(env, msg); }

bool HasArg(const Napi::CallbackInfo &info, size_t i) {
  return info.Length() > i && !info[i].IsUndefined() && !info[i].IsNull();
}

uint32_t ArgU32(const Napi::CallbackInfo &info, size_t i, const char *name) {
  if (info.Length() <= i || !info[i].IsNumber()) ThrowType(info.Env(), std::string(name) + " must be a number");
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 4294967295.0) || std::floor(d) != d)
    ThrowRange(info.Env(), std::string(name) + " must be an integer in [0, 2^32-1], got " + std::to_string(d));
  return static_cast<uint32_t>(d);
}

int ArgFd(const Napi::CallbackInfo &info, size_t i, const char *name) {
  uint32_t v = ArgU32(info, i, name);
  if (v > 0x7fffffff) ThrowRange(info.Env(), std::string(name) + " is not a valid fd");
  return static_cast<int>(v);
}

std::string ArgString(const Napi::CallbackInfo &info, size_t i, const char *name) {
  if (info.Length() <= i || !info[i].IsString()) ThrowType(info.Env(), std::string(name) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo &info, size_t i, const char *name) {
  if (info.Length() <= i || !info[i].IsBuffer()) ThrowType(info.Env(), std::string(name) + " must be a Buffer");
  return info[i].As<Napi::Buffer<uint8_t>>();
}

}  // namespace bpfl
