/** Drift compensators: the QDC fixture, and recovery of known synthetic transforms. */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import {
  alignment,
  fitAuto,
  fitCompensator,
  hasInverse,
  heldOutRetrieval,
  invert,
  loadCompensator,
  loadReverse,
  loadSafetensors,
  normalize,
  randn,
  reversePath,
  saveCompensator,
  svd,
  type Tensor,
  tensor,
  tidy,
} from "../src/index.js";
import { assertClose, FIXTURES, trainedBertTiny } from "./helpers.js";

describe("QDC fixture", () => {
  it("mean drift and compensated queries match PyTorch within 1e-5", () => {
    const f = loadSafetensors(join(FIXTURES, "qdc/drift.safetensors"));
    const c = fitCompensator("mean", f.get("query_old")!, f.get("query_new")!);
    assertClose(c.state().tensors.drift!.toArray(), f.get("drift")!.toArray(), 1e-5, 0, "drift");
    assertClose(c.apply(f.get("query_new")!).toArray(), f.get("compensated")!.toArray(), 1e-5, 0, "compensated");
    const path = join(mkdtempSync(join(tmpdir(), "qdc-drift-")), "mean.safetensors");
    saveCompensator(path, c, { fittedOn: { queries: "fixture" } });
    const back = loadCompensator(path);
    assert.deepEqual(back.fittedOn, { queries: "fixture" });
    assert.ok(back.compensator.apply(f.get("query_new")!).equal(c.apply(f.get("query_new")!)));
  });
});

/** Pairs (old, new = f(old) + noise) of normalised 32-d embeddings in 8 clusters, as real embeddings cluster. */
function pairs(f: (x: Tensor) => Tensor, n: number, seed: number): { oldE: Tensor; newE: Tensor } {
  return tidy(() => {
    const centres = normalize(randn([8, 32], { seed: 99 }));
    const which = tensor(
      Array.from({ length: n }, (_, i) => i % 8),
      { dtype: "int64" },
    );
    const oldE = normalize(centres.indexSelect(0, which).add(randn([n, 32], { seed }).mul(0.08)));
    const newE = f(oldE).add(randn([n, 32], { seed: seed + 1 }).mul(0.005));
    return { oldE, newE };
  });
}

describe("estimators recover known transforms", () => {
  const rotation = tidy(() => svd(randn([32, 32], { seed: 5 })).U.matmul(svd(randn([32, 32], { seed: 5 })).Vh));
  const affineW = tidy(() => rotation.mul(0.8).add(randn([32, 32], { seed: 6 }).mul(0.05)));
  const shift = tidy(() => randn([32], { seed: 7 }).mul(0.1));
  const transforms: Record<string, (x: Tensor) => Tensor> = {
    rotation: (x) => x.matmul(rotation),
    affine: (x) => x.matmul(affineW).add(shift),
    // each cluster drifts its own way: a smooth, non-linear field (nearest-centre weights)
    nonlinear: (x) => {
      const centres = normalize(randn([8, 32], { seed: 99 }));
      const shifts = randn([8, 32], { seed: 98 }).mul(0.1);
      return x.add(x.matmul(centres.T).mul(20).softmax(1).matmul(shifts));
    },
  };
  const expectBest: Record<string, string[]> = {
    rotation: ["procrustes", "affine"],
    affine: ["affine"],
    nonlinear: ["mlp", "kernel"],
  };
  for (const [name, f] of Object.entries(transforms)) {
    it(`${name}: the right family aligns held-out pairs and auto picks it`, () => {
      const train = pairs(f, 2000, 11);
      const test = pairs(f, 300, 21);
      const before = tidy(() => test.newE.mul(test.oldE).sum(1).div(test.newE.norm(2, 1)).mean().item());
      const auto = fitAuto(train.oldE, train.newE, { mlpEpochs: 150 });
      const best = Object.entries(auto.scores).sort((a, b) => b[1] - a[1])[0]![0];
      assert.ok(expectBest[name]!.includes(best), `${name}: auto picked ${best} (${JSON.stringify(auto.scores)})`);
      assert.equal(auto.compensator.method, best);
      const after = alignment(auto.compensator, test.oldE, test.newE);
      assert.ok(after > 0.98, `${name}: held-out alignment ${after} (before ${before})`);
      assert.ok(after > before, `${name}: compensation did not help (${before} → ${after})`);
    });
  }
  it("auto ranks by held-out retrieval when relevance is known", () => {
    const train = pairs(transforms.rotation!, 600, 31);
    // each query's relevant document is its own old embedding, lightly perturbed
    const docs = tidy(() => normalize(train.oldE.add(randn([600, 32], { seed: 32 }).mul(0.02))));
    const relevant = Array.from({ length: 600 }, (_, i) => [i]);
    const auto = fitAuto(train.oldE, train.newE, {
      methods: ["mean", "procrustes"],
      retrieval: heldOutRetrieval(docs, relevant),
    });
    assert.equal(auto.criterion, "retrieval");
    assert.equal(auto.compensator.method, "procrustes", JSON.stringify(auto.scores));
    assert.ok(
      auto.scores.procrustes! > 0.9 && auto.scores.procrustes! > auto.scores.mean!,
      JSON.stringify(auto.scores),
    );
    // the criterion itself against a brute-force MRR@10: identity map, relevant = the next row
    const identity = fitCompensator("mean", train.newE, train.newE);
    const next = Array.from({ length: 600 }, (_, i) => [(i + 1) % 600]);
    const got = heldOutRetrieval(train.oldE, next)(identity, { start: 500, count: 100 }, train.newE);
    const q = train.newE.toArray();
    const d = train.oldE.toArray();
    const dot = (a: number, b: number) => {
      let s = 0;
      for (let j = 0; j < 32; j++) s += q[a * 32 + j]! * d[b * 32 + j]!;
      return s;
    };
    let want = 0;
    for (let i = 500; i < 600; i++) {
      const target = dot(i, (i + 1) % 600);
      let rank = 1;
      for (let r = 0; r < 600; r++) if (dot(i, r) > target + 1e-6) rank++;
      want += rank <= 10 ? 1 / rank : 0;
    }
    assertClose([got], [want / 100], 0.02, 0, "MRR@10");
    assert.throws(() => fitAuto(train.oldE.narrow(0, 0, 2), train.newE.narrow(0, 0, 2)), /at least 3 pairs/);
  });

  it("maps back: mean and Procrustes invert exactly, affine by solving; kernel and mlp are fitted in reverse", () => {
    const train = pairs(transforms.affine!, 800, 41);
    const x = tidy(() => normalize(randn([50, 32], { seed: 42 })));
    for (const m of ["mean", "procrustes", "affine"] as const) {
      const c = fitCompensator(m, train.oldE, train.newE);
      const back = invert(c)!;
      assert.equal(back.method, m);
      // there and back again is the identity (up to float32 rounding)
      const round = tidy(() => back.apply(c.apply(x)));
      assertClose(round.toArray(), x.toArray(), 2e-4, 0, `${m}⁻¹ ∘ ${m}`);
      round.dispose();
      c.dispose();
      back.dispose();
    }
    // the inverse of a hand-made mean map: q ↦ q + Δ
    const mean = fitCompensator(
      "mean",
      tensor([
        [0, 0],
        [2, 2],
      ]),
      tensor([
        [1, 0],
        [3, 2],
      ]),
    );
    const q = invert(mean)!.apply(tensor([[5, 5]]));
    assert.deepEqual(q.toArray(), [6, 5]);
    for (const m of ["kernel", "mlp"] as const) {
      assert.equal(hasInverse(m), false);
      assert.equal(
        invert(fitCompensator(m, train.oldE.narrow(0, 0, 64), train.newE.narrow(0, 0, 64), { mlpEpochs: 1 })),
        null,
      );
    }
    // a file without an inverse and without a reverse fit beside it says what to do
    const dir = mkdtempSync(join(tmpdir(), "qdc-drift-back-"));
    const path = join(dir, "kernel.safetensors");
    saveCompensator(path, fitCompensator("kernel", train.oldE, train.newE), { fittedOn: {} });
    assert.throws(
      () => loadReverse(path),
      /kernel map has no inverse, and no reverse fit \(.*kernel\.reverse\.safetensors\) lies beside it/,
    );
    // the reverse fit, where it lies, is what maps back: old-space queries to the new space (on a
    // drift field the kernel follows)
    const field = pairs(transforms.nonlinear!, 2000, 43);
    saveCompensator(reversePath(path), fitCompensator("kernel", field.newE, field.oldE), { fittedOn: {} });
    const back = loadReverse(path);
    const there = alignment(back, field.newE, field.oldE);
    const none = tidy(() => field.oldE.mul(field.newE).sum(1).div(field.newE.norm(2, 1)).mean().item());
    assert.ok(there > 0.98 && there > none, `old queries aligned with new embeddings: ${none} → ${there}`);
    back.dispose();
  });

  it("maps between spaces of different dimensions: procrustes, affine, mlp and local recover a 32 → 48-d map", () => {
    // an unrelated model of another size: old = new·M + shift, M a 32×48 semi-orthogonal map
    const M = tidy(() => svd(randn([32, 48], { seed: 51 })).U.matmul(svd(randn([32, 48], { seed: 51 })).Vh));
    const f = (x: Tensor) => x.matmul(M).add(randn([48], { seed: 52 }).mul(0.05));
    const make = (n: number, seed: number) =>
      tidy(() => {
        const newE = normalize(randn([n, 32], { seed }));
        return { newE, oldE: f(newE).add(randn([n, 48], { seed: seed + 1 }).mul(0.005)) };
      });
    const train = make(1500, 53);
    const test = make(300, 55);
    for (const m of ["procrustes", "affine", "mlp", "local"] as const) {
      const c = fitCompensator(m, train.oldE, train.newE, { mlpEpochs: 100, centre: true });
      const out = c.apply(test.newE);
      assert.deepEqual(out.shape, [300, 48]);
      const a = alignment(c, test.oldE, test.newE);
      assert.ok(a > 0.97, `${m}: held-out alignment ${a}`);
      out.dispose();
      c.dispose();
    }
    const auto = fitAuto(train.oldE, train.newE, { mlpEpochs: 50 });
    assert.deepEqual(Object.keys(auto.scores).sort(), ["affine", "local", "mlp", "procrustes"]);
    // the maps back of the invertible ones: 48 → 32 through the pseudo-inverse
    const back = invert(fitCompensator("affine", train.oldE, train.newE))!;
    const round = alignment(back, test.newE, test.oldE);
    assert.ok(round > 0.97, `affine back: ${round}`);
  });

  it("local adapters follow drift that differs between regions, where one global map cannot", () => {
    const train = pairs(transforms.nonlinear!, 3000, 61);
    const test = pairs(transforms.nonlinear!, 400, 63);
    const local = fitCompensator("local", train.oldE, train.newE, { clusters: 8 });
    const global = fitCompensator("affine", train.oldE, train.newE);
    const [l, g] = [alignment(local, test.oldE, test.newE), alignment(global, test.oldE, test.newE)];
    assert.ok(l > g && l > 0.98, `local ${l} vs one affine map ${g}`);
    assert.equal(local.state().tensors.W!.shape.join(), "8,32,32");
  });

  it("rejects mismatched pairs", () => {
    assert.throws(
      () => fitCompensator("mean", randn([4, 8]), randn([5, 8])),
      /one row per pair, got \[4,8\] and \[5,8\]/,
    );
    assert.throws(
      () => fitCompensator("mean", randn([4, 8]), randn([4, 9])),
      /mean maps within one embedding space, but the models embed in 9 \(new\) and 8 \(old\) dimensions: use procrustes, affine, mlp, local/,
    );
  });
});

describe("qdc drift fit", () => {
  it("reproduces the QDC fixture through the CLI (old = start model, new = trained weights)", () => {
    const dir = mkdtempSync(join(tmpdir(), "qdc-drift-cli-"));
    const newDir = trainedBertTiny(dir);
    const queries = JSON.parse(readFileSync(join(FIXTURES, "qdc/case.json"), "utf8")).queries as string[];
    writeFileSync(join(dir, "q.txt"), queries.join("\n"));
    const out = join(dir, "drift.safetensors");
    const cli = new URL("../src/cli/main.js", import.meta.url).pathname;
    const fit = (queryFile: string) => [
      cli,
      "drift",
      "fit",
      "--old",
      join(FIXTURES, "bert-tiny"),
      "--new",
      newDir,
      "--queries",
      queryFile,
    ];
    const args = (queryFile: string, o: string) => [
      ...fit(queryFile),
      "--method",
      "mean",
      "--no-prefix",
      "--max-length",
      "32",
      "--out",
      o,
    ];
    execFileSync("node", args(join(dir, "q.txt"), out), { stdio: "pipe" });
    // the same queries in any file `encode --input` reads: JSONL rows with only a `text` field, gzipped
    writeFileSync(join(dir, "q.jsonl.gz"), gzipSync(queries.map((text) => JSON.stringify({ text })).join("\n")));
    const outJsonl = join(dir, "drift-jsonl.safetensors");
    execFileSync("node", args(join(dir, "q.jsonl.gz"), outJsonl), { stdio: "pipe" });
    assert.deepEqual(
      loadCompensator(outJsonl).compensator.state().tensors.drift!.toArray(),
      loadCompensator(out).compensator.state().tensors.drift!.toArray(),
    );
    const f = loadSafetensors(join(FIXTURES, "qdc/drift.safetensors"));
    const { compensator, fittedOn } = loadCompensator(out);
    assert.equal(fittedOn.pairs, 6);
    assertClose(compensator.state().tensors.drift!.toArray(), f.get("drift")!.toArray(), 1e-5, 0, "drift");
    assertClose(
      compensator.apply(f.get("query_new")!).toArray(),
      f.get("compensated")!.toArray(),
      1e-5,
      0,
      "compensated",
    );
    // auto with relevance: held-out retrieval over a corpus, the choice recorded in the file
    writeFileSync(
      join(dir, "corpus.jsonl"),
      queries.map((q, i) => JSON.stringify({ _id: `d${i}`, text: `${q} in detail` })).join("\n"),
    );
    writeFileSync(join(dir, "qrels.tsv"), queries.map((_, i) => `${i + 1}\td${i}\t1`).join("\n"));
    const autoOut = join(dir, "auto.safetensors");
    const base = fit(join(dir, "q.txt"));
    const auto = (queryFile: string) => [
      ...fit(queryFile),
      "--method",
      "auto",
      "--qrels",
      join(dir, "qrels.tsv"),
      "--corpus",
      join(dir, "corpus.jsonl"),
      "--out",
      autoOut,
    ];
    execFileSync("node", auto(join(dir, "q.txt")), { stdio: "pipe" });
    const picked = loadCompensator(autoOut).fittedOn.auto as {
      criterion: string;
      picked: string;
      scores: Record<string, number>;
    };
    assert.equal(picked.criterion, "retrieval");
    assert.deepEqual(Object.keys(picked.scores).sort(), [
      "affine",
      "identity",
      "kernel",
      "local",
      "mean",
      "mlp",
      "procrustes",
    ]);
    for (const v of Object.values(picked.scores)) assert.ok(v >= 0 && v <= 1);
    const half = spawnSync("node", [...base, "--method", "auto", "--qrels", join(dir, "qrels.tsv"), "--out", autoOut], {
      encoding: "utf8",
    });
    assert.match(half.stderr, /give --qrels and --corpus together/);
    const noIds = spawnSync("node", auto(join(dir, "q.jsonl.gz")), { encoding: "utf8" });
    assert.match(noIds.stderr, /q\.jsonl\.gz:1: missing '_id' \(or 'id'\)/);
  });
});
