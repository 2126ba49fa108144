{
  "targets": [
    {
      "target_name": "mamba_native",
      "sources": ["native/mamba_native.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-O2", "-std=c++17"],
      "cflags_cc!": ["-fno-exceptions"]
    }
  ]
}
