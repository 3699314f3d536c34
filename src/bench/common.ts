/** Shared pieces of the benchmarks: timing, the machine's name, and finding the PyTorch peer. */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { Tokenizer } from "../models/index.js";
import { cuda, randint, type Tensor } from "../tensor/index.js";

/** Options every benchmark command takes. */
export interface BenchOptions {
  device: string;
  out?: string;
  peer: boolean;
  python: string;
  quick?: boolean;
}

/**
 * The tiny benchmark's FT+KD models of tasks 1 and 2 (Debian, WordNet), which the serve benchmark
 * and its diagnostics (bench/*.mjs) serve: in `run`/kd, or, for a run with seeds, in its first
 * seed's folder.
 */
export function tinyModels(run: string): { oldDir: string; newDir: string } {
  const chain = existsSync(join(run, "kd")) || !existsSync(join(run, "seed-0")) ? run : join(run, "seed-0");
  const dirs = { oldDir: join(chain, "kd", "debian"), newDir: join(chain, "kd", "wordnet") };
  for (const d of Object.values(dirs))
    if (!existsSync(join(d, "lineage.json")))
      throw new Error(`${d}: missing; run the tiny benchmark first (npm start)`);
  return dirs;
}

/** Vocabulary size of the benchmarks' random-init BERTs (BERT-base's). */
export const VOCAB = 30522;

/** A WordPiece vocabulary of VOCAB tokens (special tokens first) written to `dir`, for a tokenizer the model accepts. */
export function syntheticTokenizer(dir: string): Tokenizer {
  const special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
  const words = Array.from({ length: VOCAB - special.length }, (_, i) => `w${i}`);
  writeFileSync(join(dir, "vocab.txt"), `${[...special, ...words].join("\n")}\n`);
  return Tokenizer.fromDir(dir);
}

/** Seconds per call of `fn`, doubling repetitions until one timed batch lasts `minSeconds`. */
export function timePerCall(fn: () => void, sync: () => void, minSeconds: number): number {
  fn();
  sync();
  let reps = 1;
  for (;;) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < reps; i++) fn();
    sync();
    const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
    if (elapsed >= minSeconds) return elapsed / reps;
    reps = Math.max(reps * 2, Math.ceil((reps * minSeconds * 1.2) / Math.max(elapsed, 1e-9)));
  }
}

export function findPython(explicit: string): string | null {
  const candidates = explicit ? [explicit] : ["python3", "/usr/bin/python3"];
  for (const py of candidates) {
    const r = spawnSync(py, ["-c", "import torch"], { stdio: "ignore" });
    if (r.status === 0) return py;
  }
  return null;
}

/** Debian's python3-torch is the CPU peer; installed here when missing (needs root). */
export function ensurePeerPython(explicit: string, device: string): string | null {
  const found = findPython(explicit);
  if (found || explicit || device !== "cpu") return found;
  if (process.getuid?.() !== 0) return null;
  console.error("[bench] installing Debian's python3-torch for the PyTorch peer");
  execFileSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", "python3-torch"], {
    stdio: "inherit",
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  });
  return findPython("/usr/bin/python3");
}

/** "<cpu model>, N cores" or the CUDA device count. */
export function machineName(device: string): string {
  return device.startsWith("cuda")
    ? `cuda (${cuda.deviceCount()} device(s))`
    : `${cpus()[0]?.model ?? "cpu"}, ${cpus().length} cores`;
}

/** Random token ids [n, len] (int64) framed by [CLS] (2) and [SEP] (3), as the synthetic tokenizer numbers them. */
export function syntheticIds(n: number, len: number, seed: number): Tensor {
  const t = randint(5, VOCAB, [n, len], { seed });
  t.narrow(1, 0, 1).fill_(2);
  t.narrow(1, len - 1, 1).fill_(3);
  return t;
}
