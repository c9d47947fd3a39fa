{
  "targets": [
    {
      "target_name": "bpf_loader",
      "sources": ["src/addon.cc", "src/errors.cc", "src/object.cc", "src/maps.cc", "src/progs.cc", "src/notify.cc", "src/neigh.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-Wno-missing-field-initializers", "-Wno-unused-parameter"],
      "libraries": ["-lbpf", "-lpthread"]
    }
  ]
}
