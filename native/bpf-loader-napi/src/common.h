// Shared helpers of the bpf_loader addon: errno-carrying JS errors, capture
// of libbpf's log output, argument readers.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

namespace bpfl {

// libbpf messages printed since the last ResetLog(): every native entry point
// resets it first, so an error thrown from that call can carry what libbpf
// said (for a failed load that includes the kernel verifier log).
void ResetLog(bool include_debug);
const std::string &CapturedLog();
void InstallPrintCallback();

// Symbolic errno name ("EPERM"), also for kernel-internal codes such as
// ENOTSUPP (524) that libc does not know.
std::string ErrnoName(int err);

// Builds a JS Error "<op>: <strerror> (<CODE>)" with .errno, .code,
// .syscall = op and .libbpfLog (when libbpf printed something).
Napi::Error MakeErrnoError(Napi::Env env, int err, const std::string &op);
[[noreturn]] void ThrowErrno(Napi::Env env, int err, const std::string &op);
// For libbpf calls returning a negative errno (libbpf 1.x convention); falls
// back to errno when the return value is a bare -1.
[[noreturn]] void ThrowLibbpf(Napi::Env env, int ret, const std::string &op);

[[noreturn]] void ThrowType(Napi::Env env, const std::string &msg);
[[noreturn]] void ThrowRange(Napi::Env env, const std::string &msg);

int ArgFd(const Napi::CallbackInfo &info, size_t i, const char *name);
uint32_t ArgU32(const Napi::CallbackInfo &info, size_t i, const char *name);
std::string ArgString(const Napi::CallbackInfo &info, size_t i, const char *name);
Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo &info, size_t i, const char *name);
bool HasArg(const Napi::CallbackInfo &info, size_t i);

void InitObject(Napi::Env env, Napi::Object exports);
void InitNotify(Napi::Env env, Napi::Object exports);
void InitNeigh(Napi::Env env, Napi::Object exports);
void InitMaps(Napi::Env env, Napi::Object exports);
void InitProgs(Napi::Env env, Napi::Object exports);

}  // namespace bpfl
