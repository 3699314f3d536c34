// Prints include dirs, link flags or the C++ ABI flag for the libtorch the addon builds against.
// TORCH_DIR: a PyTorch install's torch/ folder (include/ and lib/ under it); otherwise Debian's libtorch-dev.
// TORCH_CUDA=1 links the CUDA libraries; TORCH_CXX11_ABI=0|1 overrides the C++ ABI (Debian: 1).
// The C++ standard follows libtorch: C++17 for 1.13, C++20 for 2.x (2.12 and later require it).
const fs = require("node:fs");
const path = require("node:path");
const what = process.argv[2];

// libtorch's version from its headers: 2.12+ requires C++20 of ATen users, 1.13 builds as C++17.
function torchVersion() {
  const api = dir ? path.join(dir, "include/torch/csrc/api/include") : "/usr/include/torch/csrc/api/include";
  try {
    const text = fs.readFileSync(path.join(api, "torch/version.h"), "utf8");
    const major = Number(/TORCH_VERSION_MAJOR (\d+)/.exec(text)?.[1]);
    const minor = Number(/TORCH_VERSION_MINOR (\d+)/.exec(text)?.[1]);
    return { major, minor };
  } catch {
    return { major: 1, minor: 13 };
  }
}
const dir = process.env.TORCH_DIR;
// c10d's Gloo process group (data-parallel training) needs Gloo's headers: Debian's libgloo-dev,
// or the copy a PyTorch install ships under include/
function glooInclude() {
  for (const d of [dir && `${dir}/include`, "/usr/include"])
    if (d && fs.existsSync(path.join(d, "gloo/algorithm.h"))) return d;
  return null;
}
const cuda = process.env.TORCH_CUDA === "1";
const out = [];
if (what === "include") {
  if (dir) out.push(`${dir}/include`, `${dir}/include/torch/csrc/api/include`);
  else out.push("/usr/include/torch/csrc/api/include");
  // CUDA runtime headers, for the caching allocator's statistics (optional: see addon.cc)
  if (cuda) {
    for (const c of [process.env.CUDA_HOME, process.env.CUDA_PATH, "/usr/local/cuda"]) {
      if (c && fs.existsSync(path.join(c, "include/cuda_runtime_api.h"))) {
        out.push(path.join(c, "include"));
        break;
      }
    }
  }
} else if (what === "libs") {
  if (dir) out.push(`-L${dir}/lib`, `-Wl,-rpath,${dir}/lib`);
  out.push("-Wl,--no-as-needed", "-ltorch", "-ltorch_cpu", "-lc10");
  if (cuda) out.push("-ltorch_cuda", "-lc10_cuda");
  if (!dir && glooInclude() && fs.existsSync("/usr/lib/libgloo.so")) out.push("-lgloo");
  out.push("-Wl,--as-needed");
} else if (what === "abi") {
  out.push(process.env.TORCH_CXX11_ABI ?? "1");
} else if (what === "std") {
  const v = torchVersion();
  out.push(v.major >= 2 ? "-std=c++20" : "-std=c++17");
} else if (what === "defines") {
  if (cuda) out.push("QDC_WITH_CUDA=1");
  if (glooInclude()) out.push("QDC_WITH_DIST=1", "USE_C10D_GLOO=1");
} else {
  console.error(`torch-paths: unknown request '${what}' (include|libs|abi|std|defines)`);
  process.exit(2);
}
console.log(out.join(" "));
