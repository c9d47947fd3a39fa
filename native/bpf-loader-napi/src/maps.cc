// Map operations on raw fds with keys and values as raw bytes. The caller
// (src/datapath/loader.ts) knows the sizes from mapInfo() and passes
// output buffers, so a lookup does no allocation here.
#include "common.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace bpfl {

namespace {

std::string FdOp(const char *op, int fd) { return std::string(op) + "(fd " + std::to_string(fd) + ")"; }

// mapLookup(fd, key, out) -> boolean (false when the key is absent)
Napi::Value MapLookup(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  auto key = ArgBuffer(info, 1, "key");
  auto out = ArgBuffer(info, 2, "value buffer");
  ResetLog(false);
  int ret = bpf_map_lookup_elem(fd, key.Data(), out.Data());
  if (ret == 0) return Napi::Boolean::New(env, true);
  if (ret == -ENOENT) return Napi::Boolean::New(env, false);
  ThrowLibbpf(env, ret, FdOp("bpf_map_lookup_elem", fd));
}

// mapUpdate(fd, key, value, flags)
Napi::Value MapUpdate(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  auto key = ArgBuffer(info, 1, "key");
  auto value = ArgBuffer(info, 2, "value");
  uint32_t flags = HasArg(info, 3) ? ArgU32(info, 3, "flags") : 0;
  ResetLog(false);
  int ret = bpf_map_update_elem(fd, key.Data(), value.Data(), flags);
  if (ret) ThrowLibbpf(env, ret, FdOp("bpf_map_update_elem", fd));
  return env.Undefined();
}

// mapDelete(fd, key) -> boolean (false when the key was absent)
Napi::Value MapDelete(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  auto key = ArgBuffer(info, 1, "key");
  ResetLog(false);
  int ret = bpf_map_delete_elem(fd, key.Data());
  if (ret == 0) return Napi::Boolean::New(env, true);
  if (ret == -ENOENT) return Napi::Boolean::New(env, false);
  ThrowLibbpf(env, ret, FdOp("bpf_map_delete_elem", fd));
}

// mapGetNextKey(fd, key | null, out) -> boolean (false at the end)
Napi::Value MapGetNextKey(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  const void *cur = nullptr;
  if (HasArg(info, 1)) cur = ArgBuffer(info, 1, "key").Data();
  auto out = ArgBuffer(info, 2, "next key buffer");
  ResetLog(false);
  int ret = bpf_map_get_next_key(fd, cur, out.Data());
  if (ret == 0) return Napi::Boolean::New(env, true);
  if (ret == -ENOENT) return Napi::Boolean::New(env, false);
  ThrowLibbpf(env, ret, FdOp("bpf_map_get_next_key", fd));
}

bool BatchUnsupported(int err) { return err == EOPNOTSUPP || err == 524 /* ENOTSUPP */; }

// mapUpdateBatch(fd, keys, values, count, elemFlags) -> { count, batched }
// keys/values are the concatenation of count keys / values. Falls back to one
// update per element when the map type has no batch support.
Napi::Value MapUpdateBatch(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  auto keys = ArgBuffer(info, 1, "keys");
  auto values = ArgBuffer(info, 2, "values");
  uint32_t count = ArgU32(info, 3, "count");
  uint32_t elem_flags = HasArg(info, 4) ? ArgU32(info, 4, "flags") : 0;
  if (count == 0) {
    Napi::Object r = Napi::Object::New(env);
    r.Set("count", 0);
    r.Set("batched", true);
    return r;
  }
  if (keys.Length() % count || values.Length() % count)
    ThrowRange(env, "keys/values length is not a multiple of count");
  size_t ksz = keys.Length() / count, vsz = values.Length() / count;
  ResetLog(false);
  LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = elem_flags);
  uint32_t done = count;
  int ret = bpf_map_update_batch(fd, keys.Data(), values.Data(), &done, &opts);
  bool batched = true;
  if (ret && BatchUnsupported(-ret)) {
    batched = false;
    for (done = 0; done < count; done++) {
      ret = bpf_map_update_elem(fd, keys.Data() + done * ksz, values.Data() + done * vsz, elem_flags);
      if (ret) break;
    }
  }
  if (ret) {
    Napi::Error e = MakeErrnoError(env, ret < -1 ? -ret : errno, FdOp(batched ? "bpf_map_update_batch" : "bpf_map_update_elem", fd));
    e.Value().Set("updated", Napi::Number::New(env, done));
    throw e;
  }
  Napi::Object r = Napi::Object::New(env);
  r.Set("count", Napi::Number::New(env, done));
  r.Set("batched", Napi::Boolean::New(env, batched));
  return r;
}

// mapLookupBatch(fd, cursorIn | null, cursorOut, keysOut, valuesOut, maxCount)
//   -> { count, done }
// One step of a batched dump; cursorIn/out are keySize-byte tokens (hash
// maps) that the caller passes back. done=true when the map is exhausted.
// Throws ENOTSUPP/EOPNOTSUPP for map types without batch lookup.
Napi::Value MapLookupBatch(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  void *in = HasArg(info, 1) ? ArgBuffer(info, 1, "cursor in").Data() : nullptr;
  auto out_cursor = ArgBuffer(info, 2, "cursor out");
  auto keys = ArgBuffer(info, 3, "keys buffer");
  auto values = ArgBuffer(info, 4, "values buffer");
  uint32_t count = ArgU32(info, 5, "max count");
  ResetLog(false);
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  int ret = bpf_map_lookup_batch(fd, in, out_cursor.Data(), keys.Data(), values.Data(), &count, &opts);
  bool done = false;
  if (ret == -ENOENT) {
    done = true;
  } else if (ret) {
    ThrowLibbpf(env, ret, FdOp("bpf_map_lookup_batch", fd));
  }
  Napi::Object r = Napi::Object::New(env);
  r.Set("count", Napi::Number::New(env, count));
  r.Set("done", Napi::Boolean::New(env, done));
  return r;
}

// mapInfo(fd) -> { type, typeName, id, keySize, valueSize, maxEntries, flags, name }
Napi::Value MapInfo(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  struct bpf_map_info mi;
  memset(&mi, 0, sizeof mi);
  uint32_t len = sizeof mi;
  ResetLog(false);
  int ret = bpf_obj_get_info_by_fd(fd, &mi, &len);
  if (ret) ThrowLibbpf(env, ret, FdOp("bpf_obj_get_info_by_fd", fd));
  Napi::Object r = Napi::Object::New(env);
  r.Set("type", Napi::Number::New(env, mi.type));
  const char *tn = libbpf_bpf_map_type_str(static_cast<enum bpf_map_type>(mi.type));
  r.Set("typeName", tn ? tn : "unknown");
  r.Set("id", Napi::Number::New(env, mi.id));
  r.Set("keySize", Napi::Number::New(env, mi.key_size));
  r.Set("valueSize", Napi::Number::New(env, mi.value_size));
  r.Set("maxEntries", Napi::Number::New(env, mi.max_entries));
  r.Set("flags", Napi::Number::New(env, mi.map_flags));
  r.Set("name", Napi::String::New(env, mi.name));
  return r;
}

// objPin(fd, path)
Napi::Value ObjPin(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  std::string path = ArgString(info, 1, "path");
  ResetLog(false);
  int ret = bpf_obj_pin(fd, path.c_str());
  if (ret) ThrowLibbpf(env, ret, "bpf_obj_pin(" + path + ")");
  return env.Undefined();
}

// objGet(path) -> fd (owned by the caller)
Napi::Value ObjGet(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  ResetLog(false);
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) ThrowLibbpf(env, fd, "bpf_obj_get(" + path + ")");
  return Napi::Number::New(env, fd);
}

// mapGetFdById(id) -> fd (owned by the caller)
Napi::Value MapGetFdById(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint32_t id = ArgU32(info, 0, "map id");
  ResetLog(false);
  int fd = bpf_map_get_fd_by_id(id);
  if (fd < 0) ThrowLibbpf(env, fd, "bpf_map_get_fd_by_id(" + std::to_string(id) + ")");
  return Napi::Number::New(env, fd);
}

// mapCreate(type, name, keySize, valueSize, maxEntries, flags, innerMapFd?)
//   -> fd (owned by the caller). For map-in-map outer maps innerMapFd is a
//   template map of the inner type.
Napi::Value MapCreate(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint32_t type = ArgU32(info, 0, "map type");
  std::string name = HasArg(info, 1) ? ArgString(info, 1, "map name") : "";
  uint32_t key_size = ArgU32(info, 2, "keySize");
  uint32_t value_size = ArgU32(info, 3, "valueSize");
  uint32_t max_entries = ArgU32(info, 4, "maxEntries");
  uint32_t flags = HasArg(info, 5) ? ArgU32(info, 5, "flags") : 0;
  LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = flags);
  if (HasArg(info, 6)) opts.inner_map_fd = static_cast<uint32_t>(ArgFd(info, 6, "inner map fd"));
  ResetLog(false);
  int fd = bpf_map_create(static_cast<enum bpf_map_type>(type), name.empty() ? nullptr : name.c_str(), key_size,
                          value_size, max_entries, &opts);
  if (fd < 0) ThrowLibbpf(env, fd, "bpf_map_create(" + (name.empty() ? std::string("unnamed") : name) + ")");
  return Napi::Number::New(env, fd);
}

// mapLookupAndDelete(fd, key, out) -> boolean
Napi::Value MapLookupAndDelete(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  auto key = ArgBuffer(info, 1, "key");
  auto out = ArgBuffer(info, 2, "value buffer");
  ResetLog(false);
  int ret = bpf_map_lookup_and_delete_elem(fd, key.Data(), out.Data());
  if (ret == 0) return Napi::Boolean::New(env, true);
  if (ret == -ENOENT) return Napi::Boolean::New(env, false);
  ThrowLibbpf(env, ret, FdOp("bpf_map_lookup_and_delete_elem", fd));
}

// mapFreeze(fd): makes the map read-only for user space from now on.
Napi::Value MapFreeze(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  ResetLog(false);
  int ret = bpf_map_freeze(fd);
  if (ret) ThrowLibbpf(env, ret, FdOp("bpf_map_freeze", fd));
  return env.Undefined();
}

// enableRunTimeStats() -> fd: while it is open the kernel counts run_time_ns
// and run_cnt of every program (progInfo); close it to stop.
Napi::Value EnableRunTimeStats(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  ResetLog(false);
  int fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
  if (fd < 0) ThrowLibbpf(env, fd, "bpf_enable_stats(BPF_STATS_RUN_TIME)");
  return Napi::Number::New(env, fd);
}

Napi::Value CloseFd(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  if (close(fd)) ThrowErrno(env, errno, FdOp("close", fd));
  return env.Undefined();
}

Napi::Value PossibleCpus(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int n = libbpf_num_possible_cpus();
  if (n < 0) ThrowLibbpf(env, n, "libbpf_num_possible_cpus");
  return Napi::Number::New(env, n);
}

}  // namespace

void InitMaps(Napi::Env env, Napi::Object exports) {
  exports.Set("mapLookup", Napi::Function::New<MapLookup>(env, "mapLookup"));
  exports.Set("mapUpdate", Napi::Function::New<MapUpdate>(env, "mapUpdate"));
  exports.Set("mapDelete", Napi::Function::New<MapDelete>(env, "mapDelete"));
  exports.Set("mapGetNextKey", Napi::Function::New<MapGetNextKey>(env, "mapGetNextKey"));
  exports.Set("mapUpdateBatch", Napi::Function::New<MapUpdateBatch>(env, "mapUpdateBatch"));
  exports.Set("mapLookupBatch", Napi::Function::New<MapLookupBatch>(env, "mapLookupBatch"));
  exports.Set("mapInfo", Napi::Function::New<MapInfo>(env, "mapInfo"));
  exports.Set("mapGetFdById", Napi::Function::New<MapGetFdById>(env, "mapGetFdById"));
  exports.Set("objPin", Napi::Function::New<ObjPin>(env, "objPin"));
  exports.Set("objGet", Napi::Function::New<ObjGet>(env, "objGet"));
  exports.Set("mapCreate", Napi::Function::New<MapCreate>(env, "mapCreate"));
  exports.Set("mapLookupAndDelete", Napi::Function::New<MapLookupAndDelete>(env, "mapLookupAndDelete"));
  exports.Set("mapFreeze", Napi::Function::New<MapFreeze>(env, "mapFreeze"));
  exports.Set("enableRunTimeStats", Napi::Function::New<EnableRunTimeStats>(env, "enableRunTimeStats"));
  exports.Set("closeFd", Napi::Function::New<CloseFd>(env, "closeFd"));
  exports.Set("possibleCpus", Napi::Function::New<PossibleCpus>(env, "possibleCpus"));
}

}  // namespace bpfl
