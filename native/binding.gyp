{
  "targets": [
    {
      "target_name": "qdc",
      "sources": ["src/addon.cc", "src/ops.cc", "src/autograd.cc", "src/io.cc", "src/cpu_allocator.cc", "src/dist.cc"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(node torch-paths.cjs include)"
      ],
      "libraries": ["<!@(node torch-paths.cjs libs)"],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "_GLIBCXX_USE_CXX11_ABI=<!(node torch-paths.cjs abi)",
        "<!@(node torch-paths.cjs defines)"
      ],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++14"],
      "cflags_cc": ["<!(node torch-paths.cjs std)", "-fexceptions", "-frtti", "-O2", "-Wno-deprecated-declarations", "-Wno-unused-parameter"]
    }
  ]
}
