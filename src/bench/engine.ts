/**
 * `qdc bench engine`: matmul throughput and per-op dispatch overhead of the engine, next to the
 * same measurements through PyTorch on this machine in the same run (bench/engine_peer.py).
 */
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { cuda, type DType, engineInfo, getNumThreads, ones, randn, type Tensor } from "../tensor/index.js";
import { ensurePeerPython, machineName, timePerCall } from "./common.js";

interface MatmulResult {
  n: number;
  dtype: string;
  seconds: number;
  gflops: number;
}
interface PeerResult {
  torch: string;
  threads: number;
  matmul: MatmulResult[];
  dispatch: { add_us: number };
}

export async function runEngineBench(opts: {
  device: string;
  out?: string;
  peer: boolean;
  python: string;
}): Promise<void> {
  const device = opts.device;
  const onCuda = device.startsWith("cuda");
  if (onCuda && !cuda.isAvailable())
    throw new Error("--device cuda: CUDA is not available (build against a CUDA libtorch with TORCH_CUDA=1)");
  const sync = onCuda ? () => cuda.synchronize() : () => {};
  const minSeconds = 1;
  const sizes: [number, DType][] = onCuda
    ? [
        [4096, "float32"],
        [8192, "bfloat16"],
        [16384, "bfloat16"],
      ]
    : [
        [256, "float32"],
        [512, "float32"],
        [1024, "float32"],
        [2048, "float32"],
      ];
  const info = engineInfo();
  const machine = machineName(device);
  console.error(`[bench] engine: libtorch ${info.torch}, ${getNumThreads()} threads, ${machine}`);

  const ours: MatmulResult[] = [];
  for (const [n, dtype] of sizes) {
    const a = randn([n, n], { device, seed: 1 }).to(dtype);
    const b = randn([n, n], { device, seed: 2 }).to(dtype);
    const s = timePerCall(() => a.matmul(b).dispose(), sync, minSeconds);
    ours.push({ n, dtype, seconds: s, gflops: (2 * n ** 3) / s / 1e9 });
    a.dispose();
    b.dispose();
    console.error(`[bench] qdc matmul ${n} ${dtype}: ${((2 * n ** 3) / s / 1e9).toFixed(1)} GFLOP/s`);
  }
  const x: Tensor = ones([1], { device });
  const iters = 200000;
  const addUs =
    (timePerCall(
      () => {
        for (let i = 0; i < iters; i++) x.add(x).dispose();
      },
      sync,
      minSeconds,
    ) /
      iters) *
    1e6;
  x.dispose();

  let peer: PeerResult | null = null;
  if (opts.peer) {
    const py = ensurePeerPython(opts.python, device);
    if (!py) {
      console.error("[bench] no Python with torch found: peer skipped (pass --python)");
    } else {
      const script = fileURLToPath(new URL("../../../bench/engine_peer.py", import.meta.url));
      const cfg = { device, threads: getNumThreads(), sizes, minSeconds, dispatchIters: iters };
      const out = execFileSync(py, [script, JSON.stringify(cfg)], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "inherit"],
      });
      peer = JSON.parse(out) as PeerResult;
    }
  }

  const rows = ours.map((r, i) => {
    const p = peer?.matmul[i];
    return { ...r, peerGflops: p?.gflops ?? null, ratio: p ? r.gflops / p.gflops : null };
  });
  const result = {
    machine,
    device,
    threads: getNumThreads(),
    libtorch: info.torch,
    openblasCore: process.env.OPENBLAS_CORETYPE ?? null,
    peerTorch: peer?.torch ?? null,
    matmul: rows,
    dispatch: { qdcAddUs: addUs, peerAddUs: peer?.dispatch.add_us ?? null },
  };
  console.log(
    `engine benchmark — ${machine}, ${result.threads} threads, libtorch ${info.torch} vs PyTorch ${peer?.torch ?? "n/a"}`,
  );
  console.log("| matmul | dtype | qdc GFLOP/s | PyTorch GFLOP/s | ratio |");
  console.log("|---|---|---|---|---|");
  for (const r of rows) {
    console.log(
      `| ${r.n}×${r.n} | ${r.dtype} | ${r.gflops.toFixed(1)} | ${r.peerGflops?.toFixed(1) ?? "n/a"} | ${r.ratio?.toFixed(3) ?? "n/a"} |`,
    );
  }
  console.log(
    `dispatch (1-element add + dispose): qdc ${addUs.toFixed(2)} µs/op, PyTorch (Python) ${peer ? peer.dispatch.add_us.toFixed(2) : "n/a"} µs/op`,
  );
  if (opts.out) writeFileSync(opts.out, `${JSON.stringify(result, null, 2)}\n`);
}
