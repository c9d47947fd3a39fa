// NativeObject: one libbpf bpf_object (an ELF file) from open to close.
// Everything that must happen before load (pin paths, max_entries, map fd
// reuse, autoload, initial values of .data/.rodata) is a method here; after
// load the program and map fds are read from programs()/maps() and used with
// the fd-level functions in maps.cc / progs.cc. The fds belong to the object
// and are closed by close() (or when the JS object is collected).
#include "common.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <chrono>

#include <cerrno>
#include <string>

namespace bpfl {

namespace {

class NativeObject : public Napi::ObjectWrap<NativeObject> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeObject",
                       {
                           InstanceMethod<&NativeObject::Load>("load"),
                           InstanceMethod<&NativeObject::LoadAsync>("loadAsync"),
                           InstanceMethod<&NativeObject::Close>("close"),
                           InstanceMethod<&NativeObject::Programs>("programs"),
                           InstanceMethod<&NativeObject::Maps>("maps"),
                           InstanceMethod<&NativeObject::SetMaxEntries>("setMaxEntries"),
                           InstanceMethod<&NativeObject::SetPinPath>("setPinPath"),
                           InstanceMethod<&NativeObject::ReuseMapFd>("reuseMapFd"),
                           InstanceMethod<&NativeObject::SetAutoload>("setAutoload"),
                           InstanceMethod<&NativeObject::SetInitialValue>("setInitialValue"),
                           InstanceMethod<&NativeObject::LoadLog>("loadLog"),
                       });
  }

  // new NativeObject(path, { logLevel?: number })
  explicit NativeObject(const Napi::CallbackInfo &info) : Napi::ObjectWrap<NativeObject>(info) {
    Napi::Env env = info.Env();
    std::string path = ArgString(info, 0, "path");
    LIBBPF_OPTS(bpf_object_open_opts, opts);
    if (HasArg(info, 1)) {
      if (!info[1].IsObject()) ThrowType(env, "options must be an object");
      Napi::Object o = info[1].As<Napi::Object>();
      Napi::Value ll = o.Get("logLevel");
      if (!ll.IsUndefined()) {
        if (!ll.IsNumber()) ThrowType(env, "logLevel must be a number");
        log_level_ = ll.As<Napi::Number>().Uint32Value();
        opts.kernel_log_level = log_level_;
      }
    }
    ResetLog(false);
    errno = 0;
    obj_ = bpf_object__open_file(path.c_str(), &opts);
    int err = libbpf_get_error(obj_);
    if (err) {
      obj_ = nullptr;
      ThrowErrno(env, -err, "bpf_object__open_file(" + path + ")");
    }
    path_ = path;
  }

  ~NativeObject() override {
    if (obj_) bpf_object__close(obj_);
  }

 private:
  bpf_object *Obj(Napi::Env env) {
    if (!obj_) throw Napi::Error::New(env, "BPF object " + path_ + " is closed");
    if (loading_) throw Napi::Error::New(env, "BPF object " + path_ + ": loadAsync() is in progress");
    return obj_;
  }

  // The end of a load, sync or async, on the JS thread: a failed object is
  // freed (libbpf cannot retry a load), its error carries the verifier log.
  void FinishLoad(Napi::Env env, int ret, int saved_errno, std::string log) {
    load_log_ = std::move(log);
    if (ret) {
      Napi::Error e = MakeErrnoError(env, ret < -1 ? -ret : (saved_errno ? saved_errno : EINVAL), "bpf_object__load(" + path_ + ")");
      e.Value().Set("verifierLog", Napi::String::New(env, load_log_));
      bpf_object__close(obj_);
      obj_ = nullptr;
      throw e;
    }
    loaded_ = true;
  }

  // Runs bpf_object__load() (map creation, the per-CPU ones above all, and
  // verification: seconds on a small CPU) on a libuv worker thread so the
  // agent's JS thread goes on meanwhile. The object is unusable from JS until
  // it settles.
  class LoadWorker : public Napi::AsyncWorker {
   public:
    LoadWorker(Napi::Env env, NativeObject *self, Napi::Object receiver)
        : Napi::AsyncWorker(env, "bpfObjectLoad"), self_(self), deferred_(Napi::Promise::Deferred::New(env)) {
      receiver_ = Napi::Persistent(receiver);
    }
    Napi::Promise Promise() { return deferred_.Promise(); }

   protected:
    void Execute() override {
      // The libbpf log capture is thread-local: this thread's own.
      ResetLog(self_->log_level_ != 0);
      const auto start = std::chrono::steady_clock::now();
      errno = 0;
      ret_ = bpf_object__load(self_->obj_);
      errno_ = errno;
      done_ = std::chrono::steady_clock::now();
      work_ms_ = std::chrono::duration<double, std::milli>(done_ - start).count();
      log_ = CapturedLog();
    }
    void OnOK() override { Settle(); }
    void OnError(const Napi::Error &) override { Settle(); }

   private:
    void Settle() {
      Napi::Env env = Env();
      Napi::HandleScope scope(env);
      self_->loading_ = false;
      // How long the kernel's work took on the worker, and how long its
      // result then waited for the JS thread (busy elsewhere at start-up).
      const double wait_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - done_).count();
      try {
        self_->FinishLoad(env, ret_, errno_, std::move(log_));
        Napi::Object timing = Napi::Object::New(env);
        timing.Set("workMs", Napi::Number::New(env, work_ms_));
        timing.Set("waitMs", Napi::Number::New(env, wait_ms));
        deferred_.Resolve(timing);
      } catch (const Napi::Error &e) {
        deferred_.Reject(e.Value());
      }
    }
    NativeObject *self_;
    Napi::ObjectReference receiver_;
    Napi::Promise::Deferred deferred_;
    int ret_ = 0;
    int errno_ = 0;
    std::string log_;
    std::chrono::steady_clock::time_point done_;
    double work_ms_ = 0;
  };

  void RequireNotLoaded(Napi::Env env, const char *what) {
    if (loaded_) throw Napi::Error::New(env, std::string(what) + " must be called before load() (" + path_ + ")");
    if (loading_) throw Napi::Error::New(env, std::string(what) + ": loadAsync() of " + path_ + " is in progress");
  }

  bpf_map *FindMap(Napi::Env env, const std::string &name) {
    bpf_map *m = bpf_object__find_map_by_name(Obj(env), name.c_str());
    if (!m) ThrowErrno(env, ENOENT, "no map named '" + name + "' in " + path_);
    return m;
  }

  bpf_program *FindProg(Napi::Env env, const std::string &name) {
    bpf_program *p = bpf_object__find_program_by_name(Obj(env), name.c_str());
    if (!p) ThrowErrno(env, ENOENT, "no program named '" + name + "' in " + path_);
    return p;
  }

  Napi::Value Load(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    bpf_object *o = Obj(env);
    RequireNotLoaded(env, "load()");
    // With a kernel log level the verifier's statistics of successful loads
    // come at libbpf's debug level; keep those too.
    ResetLog(log_level_ != 0);
    errno = 0;
    int ret = bpf_object__load(o);
    FinishLoad(env, ret, errno, CapturedLog());
    return env.Undefined();
  }

  Napi::Value LoadAsync(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Obj(env);
    RequireNotLoaded(env, "loadAsync()");
    auto *w = new LoadWorker(env, this, info.This().As<Napi::Object>());
    loading_ = true;
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }

  Napi::Value Close(const Napi::CallbackInfo &info) {
    if (loading_) throw Napi::Error::New(info.Env(), "BPF object " + path_ + ": close() while loadAsync() is in progress");
    if (obj_) bpf_object__close(obj_);
    obj_ = nullptr;
    return info.Env().Undefined();
  }

  Napi::Value LoadLog(const Napi::CallbackInfo &info) { return Napi::String::New(info.Env(), load_log_); }

  Napi::Value Programs(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    bpf_object *o = Obj(env);
    Napi::Array out = Napi::Array::New(env);
    uint32_t i = 0;
    bpf_program *p;
    bpf_object__for_each_program(p, o) {
      Napi::Object d = Napi::Object::New(env);
      d.Set("name", bpf_program__name(p));
      d.Set("section", bpf_program__section_name(p));
      enum bpf_prog_type t = bpf_program__type(p);
      d.Set("type", Napi::Number::New(env, t));
      const char *tn = libbpf_bpf_prog_type_str(t);
      d.Set("typeName", tn ? tn : "unknown");
      d.Set("autoload", Napi::Boolean::New(env, bpf_program__autoload(p)));
      d.Set("fd", Napi::Number::New(env, loaded_ ? bpf_program__fd(p) : -1));
      out.Set(i++, d);
    }
    return out;
  }

  Napi::Value Maps(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    bpf_object *o = Obj(env);
    Napi::Array out = Napi::Array::New(env);
    uint32_t i = 0;
    bpf_map *m;
    bpf_object__for_each_map(m, o) {
      Napi::Object d = Napi::Object::New(env);
      d.Set("name", bpf_map__name(m));
      enum bpf_map_type t = bpf_map__type(m);
      d.Set("type", Napi::Number::New(env, t));
      const char *tn = libbpf_bpf_map_type_str(t);
      d.Set("typeName", tn ? tn : "unknown");
      d.Set("keySize", Napi::Number::New(env, bpf_map__key_size(m)));
      d.Set("valueSize", Napi::Number::New(env, bpf_map__value_size(m)));
      d.Set("maxEntries", Napi::Number::New(env, bpf_map__max_entries(m)));
      d.Set("flags", Napi::Number::New(env, bpf_map__map_flags(m)));
      d.Set("internal", Napi::Boolean::New(env, bpf_map__is_internal(m)));
      const char *pp = bpf_map__pin_path(m);
      d.Set("pinPath", pp ? Napi::Value(Napi::String::New(env, pp)) : env.Null());
      d.Set("pinned", Napi::Boolean::New(env, bpf_map__is_pinned(m)));
      d.Set("fd", Napi::Number::New(env, bpf_map__fd(m)));
      out.Set(i++, d);
    }
    return out;
  }

  Napi::Value SetMaxEntries(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    RequireNotLoaded(env, "setMaxEntries()");
    std::string name = ArgString(info, 0, "map name");
    uint32_t n = ArgU32(info, 1, "maxEntries");
    ResetLog(false);
    int ret = bpf_map__set_max_entries(FindMap(env, name), n);
    if (ret) ThrowLibbpf(env, ret, "bpf_map__set_max_entries(" + name + ")");
    return env.Undefined();
  }

  // Pin path per map: at load libbpf reuses the map pinned there when it is
  // compatible (type, key/value size, max_entries, flags), fails when it is
  // not, and otherwise creates the map and pins it there.
  Napi::Value SetPinPath(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    RequireNotLoaded(env, "setPinPath()");
    std::string name = ArgString(info, 0, "map name");
    ResetLog(false);
    int ret;
    if (HasArg(info, 1)) {
      std::string path = ArgString(info, 1, "pin path");
      ret = bpf_map__set_pin_path(FindMap(env, name), path.c_str());
    } else {
      ret = bpf_map__set_pin_path(FindMap(env, name), nullptr);
    }
    if (ret) ThrowLibbpf(env, ret, "bpf_map__set_pin_path(" + name + ")");
    return env.Undefined();
  }

  // Makes the object use an existing map (e.g. one owned by another object
  // or opened from bpffs) instead of creating its own.
  Napi::Value ReuseMapFd(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    RequireNotLoaded(env, "reuseMapFd()");
    std::string name = ArgString(info, 0, "map name");
    int fd = ArgFd(info, 1, "map fd");
    ResetLog(false);
    int ret = bpf_map__reuse_fd(FindMap(env, name), fd);
    if (ret) ThrowLibbpf(env, ret, "bpf_map__reuse_fd(" + name + ")");
    return env.Undefined();
  }

  Napi::Value SetAutoload(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    RequireNotLoaded(env, "setAutoload()");
    std::string name = ArgString(info, 0, "program name");
    if (info.Length() < 2 || !info[1].IsBoolean()) ThrowType(env, "autoload must be a boolean");
    int ret = bpf_program__set_autoload(FindProg(env, name), info[1].As<Napi::Boolean>().Value());
    if (ret) ThrowLibbpf(env, ret, "bpf_program__set_autoload(" + name + ")");
    return env.Undefined();
  }

  // Initial contents of a .data/.rodata/.bss map (e.g. "obj_name.rodata"),
  // which is how `const volatile` configuration reaches the program.
  Napi::Value SetInitialValue(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    RequireNotLoaded(env, "setInitialValue()");
    std::string name = ArgString(info, 0, "map name");
    Napi::Buffer<uint8_t> data = ArgBuffer(info, 1, "value");
    ResetLog(false);
    int ret = bpf_map__set_initial_value(FindMap(env, name), data.Data(), data.Length());
    if (ret) ThrowLibbpf(env, ret, "bpf_map__set_initial_value(" + name + ")");
    return env.Undefined();
  }

  bpf_object *obj_ = nullptr;
  bool loaded_ = false;
  // A LoadWorker owns obj_ until it settles (the worker holds a reference to
  // the JS object, so it is not collected meanwhile).
  bool loading_ = false;
  uint32_t log_level_ = 0;
  std::string path_;
  std::string load_log_;
};

}  // namespace

void InitObject(Napi::Env env, Napi::Object exports) { exports.Set("NativeObject", NativeObject::Define(env)); }

}  // namespace bpfl
