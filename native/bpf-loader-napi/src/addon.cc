// bpf_loader: a thin N-API binding of libbpf for edgelb's datapath. The
// typed API lives in src/datapath/loader.ts; this layer only converts
// arguments, calls libbpf and turns failures into errno-carrying errors.
// One more entry rides in the same .node file without being part of the
// loader: sdNotify (notify.cc), bound by src/agent/sd-notify.ts on its own,
// and neighbours6 (neigh.cc), bound by src/node-agent/edge-neighbours.ts.
#include <bpf/libbpf.h>
#include <bpf/libbpf_version.h>

#include "common.h"

namespace bpfl {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // Strict libbpf 1.x semantics (negative errno returns) are the default in
  // 1.x; the print callback routes libbpf's output into error objects.
  InstallPrintCallback();
  InitObject(env, exports);
  InitMaps(env, exports);
  InitProgs(env, exports);
  InitNotify(env, exports);
  InitNeigh(env, exports);
  exports.Set("libbpfVersion", Napi::String::New(env, std::to_string(LIBBPF_MAJOR_VERSION) + "." +
                                                          std::to_string(LIBBPF_MINOR_VERSION)));
  return exports;
}

}  // namespace bpfl

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return bpfl::Init(env, exports); }

NODE_API_MODULE(bpf_loader, InitModule)
