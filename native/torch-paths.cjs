// Prints include dirs, link flags or the C++ ABI flag for the libtorch the addon builds against.
// TORCH_DIR: a PyTorch install's torch/ folder (include/ and lib/ under it); otherwise Debian's libtorch-dev.
// TORCH_CUDA=1 links the CUDA libraries; TORCH_CXX11_ABI=0|1 overrides the C++ ABI (Debian: 1).
const what = process.argv[2];
const dir = process.env.TORCH_DIR;
const cuda = process.env.TORCH_CUDA === "1";
const out = [];
if (what === "include") {
  if (dir) out.push(`${dir}/include`, `${dir}/include/torch/csrc/api/include`);
  else out.push("/usr/include/torch/csrc/api/include");
} else if (what === "libs") {
  if (dir) out.push(`-L${dir}/lib`, `-Wl,-rpath,${dir}/lib`);
  out.push("-Wl,--no-as-needed", "-ltorch", "-ltorch_cpu", "-lc10");
  if (cuda) out.push("-ltorch_cuda", "-lc10_cuda");
  out.push("-Wl,--as-needed");
} else if (what === "abi") {
  out.push(process.env.TORCH_CXX11_ABI ?? "1");
} else if (what === "defines") {
  if (cuda) out.push("QDC_WITH_CUDA=1");
} else {
  console.error(`torch-paths: unknown request '${what}' (include|libs|abi|defines)`);
  process.exit(2);
}
console.log(out.join(" "));
