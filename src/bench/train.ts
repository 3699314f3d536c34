/**
 * `qdc bench train`: time of one contrastive training step (query and document forward, InfoNCE
 * with 7 hard negatives per query at logit scale 50, backward, clipping, AdamW) for a random-init
 * BERT, against the same step in PyTorch on the same machine in the same run with the same weights
 * and token ids (bench/train_peer.py). CPU: BERT 4×256, 32 queries × 32 tokens, 32 × (1 + 7)
 * documents × 128 tokens. CUDA: BERT-base, 32 queries × 32 tokens, 256 documents × 256 tokens.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { bertConfig, EmbeddingModel } from "../models/index.js";
import { AdamW, clipGradNorm, cuda, getNumThreads, saveSafetensors, type Tensor, tidy } from "../tensor/index.js";
import { infoNCE } from "../train/losses.js";
import { noDecay } from "../train/trainer.js";
import {
  type BenchOptions,
  ensurePeerPython,
  machineName,
  syntheticIds,
  syntheticTokenizer,
  timePerCall,
  VOCAB,
} from "./common.js";

export async function runTrainBench(opts: BenchOptions): Promise<void> {
  const device = opts.device;
  const onCuda = device.startsWith("cuda");
  if (onCuda && !cuda.isAvailable()) throw new Error("--device cuda: CUDA is not available");
  const sync = onCuda ? () => cuda.synchronize() : () => {};
  const shape = onCuda
    ? { layers: 12, hidden: 768, heads: 12, name: "BERT-base 12×768" }
    : { layers: 4, hidden: 256, heads: 4, name: "BERT 4×256" };
  const nq = 32;
  const qLen = 32;
  const nd = onCuda ? 256 : 32 * 8;
  const dLen = onCuda ? 256 : 128;
  const work = mkdtempSync(join(tmpdir(), "qdc-bench-train-"));
  const minSeconds = opts.quick ? 1 : 10;
  const rounds = opts.quick ? 1 : 2;
  try {
    const tok = syntheticTokenizer(work);
    const cfg = bertConfig({
      vocabSize: VOCAB,
      hiddenSize: shape.hidden,
      numLayers: shape.layers,
      numHeads: shape.heads,
      dropout: 0,
    });
    const model = EmbeddingModel.create(cfg, tok, { seed: 1, device });
    model.training = true;
    const modelDir = join(work, "model");
    model.save(modelDir);
    const q = syntheticIds(nq, qLen, 2);
    const d = syntheticIds(nd, dLen, 3);
    saveSafetensors(join(work, "q.safetensors"), { input_ids: q });
    saveSafetensors(join(work, "d.safetensors"), { input_ids: d });
    const qBatch = { inputIds: q.to(device), attentionMask: q.to(device).mul(0).add(1), padded: false };
    const dBatch = { inputIds: d.to(device), attentionMask: d.to(device).mul(0).add(1), padded: false };
    const named = model.parameters();
    const opt = new AdamW(
      [
        { params: named.filter(([n, p]) => !noDecay(n, p.shape)).map(([, p]) => p), weightDecay: 0.01 },
        { params: named.filter(([n, p]) => noDecay(n, p.shape)).map(([, p]) => p), weightDecay: 0 },
      ],
      { lr: 1e-5 },
    );
    const params: Tensor[] = named.map(([, p]) => p);
    const step = () => {
      opt.zeroGrad();
      tidy(() => infoNCE(model.embed(qBatch), model.embed(dBatch), { scale: 50 }).backward());
      clipGradNorm(params, 1.0);
      opt.step();
    };
    let ours = Number.POSITIVE_INFINITY;
    let peer: { torch: string; secondsPerStep: number } | null = null;
    const py = opts.peer ? ensurePeerPython(opts.python, device) : null;
    if (opts.peer && !py) console.error("[bench] no Python with torch found: peer skipped (pass --python)");
    for (let r = 0; r < rounds; r++) {
      ours = Math.min(ours, timePerCall(step, sync, minSeconds));
      console.error(`[bench] qdc train step: ${(ours * 1000).toFixed(0)} ms`);
      if (py) {
        const script = fileURLToPath(new URL("../../../bench/train_peer.py", import.meta.url));
        const c = {
          model: modelDir,
          queries: join(work, "q.safetensors"),
          docs: join(work, "d.safetensors"),
          device,
          threads: getNumThreads(),
          minSeconds,
          rounds: 1,
        };
        const got = JSON.parse(
          execFileSync(py, [script, JSON.stringify(c)], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] }),
        ) as { torch: string; secondsPerStep: number };
        peer = peer && peer.secondsPerStep < got.secondsPerStep ? peer : got;
        console.error(`[bench] PyTorch train step: ${(got.secondsPerStep * 1000).toFixed(0)} ms`);
      }
    }
    const result = {
      machine: machineName(device),
      device,
      threads: getNumThreads(),
      model: shape.name,
      queries: `${nq} × ${qLen} tokens`,
      documents: `${nd} × ${dLen} tokens`,
      qdcMsPerStep: ours * 1000,
      peerMsPerStep: peer ? peer.secondsPerStep * 1000 : null,
      peerTorch: peer?.torch ?? null,
      timeRatio: peer ? ours / peer.secondsPerStep : null,
    };
    console.log(
      `train benchmark — ${result.machine}, ${result.threads} threads, ${shape.name}, ${result.queries} + ${result.documents}`,
    );
    console.log(
      `qdc ${result.qdcMsPerStep.toFixed(0)} ms/step, PyTorch ${result.peerMsPerStep?.toFixed(0) ?? "n/a"} ms/step, time ratio ${result.timeRatio?.toFixed(3) ?? "n/a"} (lower is better)`,
    );
    if (opts.out) writeFileSync(opts.out, `${JSON.stringify(result, null, 2)}\n`);
    model.dispose();
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
