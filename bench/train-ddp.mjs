// Training steps/s of data parallelism on this machine: 2 ranks × 1 libtorch thread (`qdc train
// --nproc 2`, c10d/Gloo over loopback) against 1 process × 2 threads, on the same model, data and
// global batch, in alternating rounds. Steps/s is taken from train.log.jsonl between the first and
// the last step (model loading and the rendezvous left out).
// Run after `npm start`:
//   node bench/train-ddp.mjs MODEL_DIR TRAIN_JSONL [steps=30] [batch=32] [rounds=2] [max_length=96]
// (the output is JSON on stdout)
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";

const [model, data] = process.argv.slice(2, 4);
if (!model || !data) {
  console.error("usage: node bench/train-ddp.mjs MODEL_DIR TRAIN_JSONL [steps] [batch] [rounds] [max_length]");
  process.exit(2);
}
const steps = Number(process.argv[4] ?? 30);
const batch = process.argv[5] ?? "32";
const rounds = Number(process.argv[6] ?? 2);
const maxLength = process.argv[7] ?? "96";
const cli = new URL("../dist/src/cli/main.js", import.meta.url).pathname;

function once(kind) {
  const out = mkdtempSync(join(tmpdir(), "qdc-ddp-bench-"));
  const args = [
    cli, "train", "--data", data, "--init", model, "--out", out, "--batch-size", batch, "--negatives", "1",
    "--lr", "1e-4", "--steps", String(steps), "--kd-query", "1", "--kd-doc", "1", "--max-length", maxLength,
    "--checkpoint-every", String(steps),
  ];
  const threads = kind === "ddp" ? "1" : "2";
  if (kind === "ddp") args.push("--nproc", "2");
  const t0 = performance.now();
  const r = spawnSync("node", args, { encoding: "utf8", env: { ...process.env, QDC_THREADS: threads, OMP_NUM_THREADS: threads } });
  const wall = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${kind}: ${r.stderr.slice(-2000)}`);
  const log = readFileSync(join(out, "train.log.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  rmSync(out, { recursive: true, force: true });
  const span = log.at(-1).seconds - log[0].seconds;
  return { kind, stepsPerSecond: (log.length - 1) / span, wallSeconds: wall, lastLoss: log.at(-1).loss };
}

const runs = [];
for (let i = 0; i < rounds; i++) for (const kind of i % 2 ? ["ddp", "single"] : ["single", "ddp"]) {
  const r = once(kind);
  console.error(`${kind}: ${r.stepsPerSecond.toFixed(3)} steps/s (${r.wallSeconds.toFixed(1)} s wall)`);
  runs.push(r);
}
const mean = (k) => {
  const xs = runs.filter((r) => r.kind === k).map((r) => r.stepsPerSecond);
  return xs.reduce((a, b) => a + b, 0) / xs.length;
};
console.log(
  JSON.stringify(
    {
      machine: `${cpus().length} × ${cpus()[0]?.model}`,
      model,
      data,
      steps,
      batch: Number(batch),
      maxLength: Number(maxLength),
      runs,
      single2Threads: mean("single"),
      ddp2x1Thread: mean("ddp"),
      ratio: mean("ddp") / mean("single"),
    },
    null,
    1,
  ),
);
