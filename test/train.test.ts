/** Training: parity with the PyTorch train-step fixture through the CLI, resume, readers, losses, schedule. */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { RowStream, readRows } from "../src/data/pairs.js";
import { loadSafetensors, readHeader, tensor, tidy } from "../src/index.js";
import { hashModel, lineageOf } from "../src/lineage/index.js";
import { cosineDistillation, infoNCE } from "../src/train/losses.js";
import { linearSchedule } from "../src/train/schedule.js";
import { noDecay, train } from "../src/train/trainer.js";
import { assertClose, FIXTURES } from "./helpers.js";

const cli = new URL("../src/cli/main.js", import.meta.url).pathname;
const tmp = () => mkdtempSync(join(tmpdir(), "qdc-train-"));
const fixture = join(FIXTURES, "train-step");
const recipe = (out: string) => [
  "train",
  "--data",
  join(fixture, "train.jsonl"),
  "--init",
  join(FIXTURES, "bert-tiny"),
  "--out",
  out,
  "--batch-size",
  "3",
  "--negatives",
  "1",
  "--lr",
  "1e-3",
  "--warmup",
  "2",
  "--steps",
  "4",
  "--weight-decay",
  "0.01",
  "--kd-query",
  "1",
  "--kd-doc",
  "1",
  "--logit-scale",
  "50",
  "--no-shuffle",
  "--no-prefix",
  "--seed",
  "0",
  "--max-length",
  "32",
];

describe("train-step parity (CLI flag form)", () => {
  it("per-step losses, lr and grad norms, and the final weights match PyTorch within 1e-5", () => {
    const out = tmp();
    execFileSync("node", [cli, ...recipe(out)], { stdio: "pipe" });
    const expected = JSON.parse(readFileSync(join(fixture, "steps.json"), "utf8")).steps as Record<string, number>[];
    const log = readFileSync(join(out, "train.log.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    assert.equal(log.length, 4);
    log.forEach((got, i) => {
      const e = expected[i]!;
      assert.equal(got.step, e.step);
      assertClose([got.lr], [e.lr!], 1e-12, 0, `lr ${i}`);
      for (const k of ["loss", "infonce", "kd_query", "kd_doc"])
        assertClose([got[k]], [e[k]!], 1e-5, 0, `${k} at step ${i}`);
      assertClose([got.grad_norm], [e.grad_norm_before_clip!], 1e-4, 1e-5, `grad norm at step ${i}`);
    });
    const after = loadSafetensors(join(fixture, "weights_after.safetensors"));
    const mine = loadSafetensors(join(out, "model.safetensors"));
    assert.equal(mine.size, after.size);
    for (const [name, w] of after) assertClose(mine.get(name)!.toArray(), w.toArray(), 1e-5, 0, name);
    // the flag form records the lineage too: the model's id, its parent (--init) by id and path
    const rec = JSON.parse(readFileSync(join(out, "lineage.json"), "utf8"));
    assert.equal(rec.id, hashModel(out));
    assert.deepEqual(rec.parent, {
      id: hashModel(join(FIXTURES, "bert-tiny")),
      path: relative(out, join(FIXTURES, "bert-tiny")),
    });
  });
});

describe("resume", () => {
  /** a few steps of bert-tiny on the fixture rows, a checkpoint after each */
  const small = {
    data: [join(fixture, "train.jsonl")],
    init: join(FIXTURES, "bert-tiny"),
    batchSize: 2,
    negatives: 1,
    lr: 1e-3,
    warmup: 1,
    maxLength: 32,
    checkpointEvery: 1,
  };
  it("a run interrupted after k steps and resumed ends with the same weights as one run", async () => {
    const base = {
      ...small,
      steps: 5,
      kdQuery: 1,
      kdDoc: 0.5,
      shuffle: true,
      seed: 7,
    };
    const whole = tmp();
    await train({ ...base, out: whole });
    const broken = tmp();
    await assert.rejects(train({ ...base, out: broken, crashAfter: 2 }), /simulated crash/);
    const r = await train({ ...base, out: broken, resume: true });
    assert.equal(r.resumedFrom, 2);
    assert.deepEqual(readFileSync(join(broken, "model.safetensors")), readFileSync(join(whole, "model.safetensors")));
    const steps = readFileSync(join(broken, "train.log.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l).step);
    assert.deepEqual(steps, [0, 1, 2, 3, 4]);
    await assert.rejects(
      train({ ...base, lr: 5e-4, out: broken, resume: true }),
      /checkpoint was made with other options/,
    );
  });

  it("checkpoints by default about ten times a run, so a crash loses at most a tenth of it", async () => {
    const { checkpointEvery: _, ...defaults } = small;
    const base = { ...defaults, steps: 120 };
    const out = tmp();
    await assert.rejects(train({ ...base, out, crashAfter: 77 }), /simulated crash/);
    // every ⌈120 / 10⌉ = 12 steps, at least 50 apart: the checkpoint of step 50 is there
    const r = await train({ ...base, out, resume: true });
    assert.equal(r.resumedFrom, 50);
  });

  it("a checkpoint is never passed over: without --resume it is named, torn it is refused, half-replaced it is recovered", async () => {
    const base = { ...small, steps: 4 };
    const out = tmp();
    await assert.rejects(train({ ...base, out, crashAfter: 2 }), /simulated crash/);
    const ckpt = join(out, "checkpoint");
    await assert.rejects(train({ ...base, out }), {
      message: `${out} holds a checkpoint of step 2: pass --resume to go on from it, or remove ${ckpt} to train from step 0`,
    });
    // a crash between the two renames of a checkpoint replacement: only the one set aside is left
    renameSync(ckpt, `${ckpt}.old-12345`);
    writeFileSync(join(out, "stray"), "");
    const r = await train({ ...base, out, resume: true, steps: 4 });
    assert.equal(r.resumedFrom, 2);
    // a checkpoint missing a file
    const torn = tmp();
    await assert.rejects(train({ ...base, out: torn, crashAfter: 1 }), /simulated crash/);
    rmSync(join(torn, "checkpoint", "optimizer.safetensors"));
    await assert.rejects(train({ ...base, out: torn, resume: true }), {
      message: `${join(torn, "checkpoint")}: the checkpoint has no optimizer.safetensors (a copy cut short?): restore it, or remove ${join(torn, "checkpoint")} to train from step 0`,
    });
  });

  it("--negatives defaults to the fewest hard negatives any row carries", () => {
    const out = tmp();
    const dir = tmp();
    const rows = [
      { query: "a", document: "b", negatives: ["x", "y", "z"] },
      { query: "c", document: "d", negatives: ["x", "y"] },
      { query: "e", document: "f", negatives: ["x", "y", "w"] },
    ];
    writeFileSync(join(dir, "rows.jsonl"), `${rows.map((r) => JSON.stringify(r)).join("\n")}\n`);
    const r = spawnSync(
      "node",
      [
        cli,
        "train",
        "--data",
        join(dir, "rows.jsonl"),
        "--init",
        join(FIXTURES, "bert-tiny"),
        "--out",
        out,
        "--steps",
        "1",
        "--batch-size",
        "3",
        "--max-length",
        "16",
      ],
      { encoding: "utf8" },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(
      r.stderr,
      /train: 2 hard negative\(s\) per query \(the fewest any row carries; --negatives to choose\)/,
    );
  });
});

describe("training data", () => {
  it("reads gzipped rows, applies prefixes and validates rows with file:line", async () => {
    const dir = tmp();
    const rows = [
      { query: "q1", document: "d1", negatives: ["n1", "n2"] },
      { query: "q2", document: "d2" },
    ];
    writeFileSync(join(dir, "a.jsonl.gz"), gzipSync(rows.map((r) => JSON.stringify(r)).join("\n")));
    const got = [];
    for await (const r of readRows([join(dir, "a.jsonl.gz")], { queryPrefix: "Q: ", documentPrefix: "D: " }))
      got.push(r);
    assert.deepEqual(
      got.map((r) => [r.query, r.document, r.negatives]),
      [
        ["Q: q1", "D: d1", ["D: n1", "D: n2"]],
        ["Q: q2", "D: d2", []],
      ],
    );
    const bad = async (line: string, re: RegExp) => {
      writeFileSync(join(dir, "bad.jsonl"), `${JSON.stringify(rows[0])}\n${line}\n`);
      await assert.rejects(async () => {
        for await (const _ of readRows([join(dir, "bad.jsonl")]));
      }, re);
    };
    await bad('{"query": "", "document": "d"}', /bad\.jsonl:2: empty 'query'/);
    await bad('{"query": "q", "document": "  "}', /bad\.jsonl:2: empty 'document'/);
    await bad('{"query": "q"}', /bad\.jsonl:2: 'document' must be a string, got null/);
    await bad(
      '{"query": "q", "document": "d", "negatives": "x"}',
      /bad\.jsonl:2: 'negatives' must be a list of strings/,
    );
    await bad("[1, 2]", /bad\.jsonl:2: a row must be a JSON object/);
    await bad("{nope", /bad\.jsonl:2: not valid JSON/);
  });

  it("batches wrap around epochs, shuffle deterministically and seek to a position", async () => {
    const dir = tmp();
    writeFileSync(
      join(dir, "r.jsonl"),
      Array.from({ length: 5 }, (_, i) => JSON.stringify({ query: `q${i}`, document: `d${i}` })).join("\n"),
    );
    const plain = new RowStream([join(dir, "r.jsonl")], { shuffle: false });
    const seen = [...(await plain.next(3)), ...(await plain.next(3))].map((r) => r.query);
    assert.deepEqual(seen, ["q0", "q1", "q2", "q3", "q4", "q0"]);
    assert.deepEqual(plain.position, { epoch: 1, rows: 1 });
    const a = new RowStream([join(dir, "r.jsonl")], { seed: 3, shuffleBuffer: 2 });
    const first = (await a.next(7)).map((r) => r.query);
    assert.deepEqual([...first.slice(0, 5)].sort(), ["q0", "q1", "q2", "q3", "q4"]);
    const b = new RowStream([join(dir, "r.jsonl")], { seed: 3, shuffleBuffer: 2 });
    await b.seek({ epoch: 1, rows: 1 });
    assert.deepEqual(
      (await b.next(1)).map((r) => r.query),
      [first[6]],
    );
    await assert.rejects(new RowStream([join(dir, "none.jsonl")]).next(1), /no such training file/);
  });

  it("rows with too few hard negatives are refused", async () => {
    const dir = tmp();
    writeFileSync(join(dir, "r.jsonl"), `${JSON.stringify({ query: "q", document: "d", negatives: ["n"] })}\n`);
    await assert.rejects(
      train({
        data: [join(dir, "r.jsonl")],
        init: join(FIXTURES, "bert-tiny"),
        out: tmp(),
        batchSize: 1,
        negatives: 2,
        lr: 1e-3,
        warmup: 0,
        steps: 1,
      }),
      /r\.jsonl:1: row has 1 negatives, training asks for 2/,
    );
  });
});

describe("losses and schedule", () => {
  it("InfoNCE equals a hand computation with in-batch and hard negatives", () => {
    tidy(() => {
      const q = tensor([
        [1, 0],
        [0, 1],
      ]);
      const d = tensor([
        [1, 0],
        [0.6, 0.8],
        [0, 1],
        [0.8, 0.6],
      ]);
      // query 0: positive d0, query 1: positive d2; logits = 2·q·dᵀ
      const l0 = -Math.log(Math.exp(2) / (Math.exp(2) + Math.exp(1.2) + Math.exp(0) + Math.exp(1.6)));
      const l1 = -Math.log(Math.exp(2) / (Math.exp(0) + Math.exp(1.6) + Math.exp(2) + Math.exp(1.2)));
      assertClose([infoNCE(q, d, { scale: 2 }).item()], [(l0 + l1) / 2], 1e-6);
      // bidirectional: positives d0, d2 against the queries
      const b0 = -Math.log(Math.exp(2) / (Math.exp(2) + Math.exp(0)));
      assertClose([infoNCE(q, d, { scale: 2, bidirectional: true }).item()], [((l0 + l1) / 2 + b0) / 2], 1e-6);
      assert.throws(() => infoNCE(q, d.narrow(0, 0, 3), { scale: 1 }), /3 documents for 2 queries/);
      assertClose([cosineDistillation(tensor([[1, 0]]), tensor([[0.6, 0.8]])).item()], [0.4], 1e-6);
    });
  });
  it("linear warm-up then decay to 0, lr of step 0 is 0", () => {
    assert.deepEqual(
      [0, 1, 2, 3, 4].map((s) => linearSchedule(s, 1e-3, 2, 4)),
      [0, 0.0005, 0.001, 0.0005, 0],
    );
    assert.equal(linearSchedule(0, 1, 0, 10), 1);
  });
  it("no weight decay for biases and parameters with fewer than 2 real dims", () => {
    assert.equal(noDecay("encoder.layer.0.output.dense.bias", [64]), true);
    assert.equal(noDecay("embeddings.LayerNorm.weight", [64]), true);
    assert.equal(noDecay("x.weight", [1, 64]), true);
    assert.equal(noDecay("encoder.layer.0.output.dense.weight", [64, 128]), false);
  });
});

describe("continual runner", () => {
  it("runs YAML tasks in order from each previous model, records lineage, and skips finished tasks", () => {
    const dir = tmp();
    const beir = join(dir, "beir");
    execFileSync("mkdir", ["-p", join(beir, "qrels")]);
    writeFileSync(
      join(beir, "corpus.jsonl"),
      [
        { _id: "d1", title: "jq", text: "command-line JSON processor" },
        { _id: "d2", title: "", text: "GNU C Library" },
        { _id: "d3", title: "xz", text: "compression" },
      ]
        .map((r) => JSON.stringify(r))
        .join("\n"),
    );
    writeFileSync(
      join(beir, "queries.jsonl"),
      [JSON.stringify({ _id: "q1", text: "json tool" }), JSON.stringify({ _id: "q2", text: "libc" })].join("\n"),
    );
    writeFileSync(join(beir, "qrels", "train.tsv"), "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq2\td3\t0\n");
    writeFileSync(
      join(dir, "run.yaml"),
      [
        "run: demo",
        "out: runs",
        `init: ${join(FIXTURES, "bert-tiny")}`,
        "defaults: { batch_size: 2, lr: 0.001, warmup: 1, kd: true, max_length: 32, negatives: 0 }",
        "drift: { methods: [mean, procrustes], queries: 50 }",
        "tasks:",
        `  - { name: first, data: [${join(fixture, "train.jsonl")}], steps: 2, negatives: 1 }`,
        "  - { name: second, beir: { dir: beir, split: train }, epochs: 2 }",
      ].join("\n"),
    );
    const out = execFileSync("node", [cli, "train", "--config", join(dir, "run.yaml")], {
      encoding: "utf8",
      stdio: "pipe",
    });
    assert.equal(out, "");
    const first = join(dir, "runs", "demo", "first");
    const second = join(dir, "runs", "demo", "second");
    // each model's record names its parent by content id and relative path, and itself by id
    const base = join(FIXTURES, "bert-tiny");
    const rec = (d: string) => JSON.parse(readFileSync(join(d, "lineage.json"), "utf8"));
    assert.deepEqual(rec(first).parent, { id: hashModel(base), path: relative(first, base) });
    assert.deepEqual(rec(second).parent, { id: hashModel(first), path: "../first" });
    assert.equal(rec(second).id, hashModel(second));
    assert.equal(rec(second).task, "second");
    assert.deepEqual(
      lineageOf(second).map((e) => e.id),
      [second, first, base].map((d) => hashModel(d)),
    );
    // each step's compensators sit beside its model, naming what they were fitted on
    for (const m of ["mean", "procrustes"]) {
      const meta = readHeader(join(second, "drift", `${m}.safetensors`)).metadata;
      assert.equal(meta.qdc_compensator, m);
      const on = JSON.parse(meta.fitted_on!);
      assert.equal(on.old, first);
      assert.equal(on.new, second);
      assert.equal(on.pairs, 2);
    }
    const meanFile = join(first, "drift", "mean.safetensors");
    const fittedAt = statSync(meanFile).mtimeMs;
    // 2 positive pairs × 2 epochs / batch 2 = 2 steps
    assert.equal(readFileSync(join(second, "train.log.jsonl"), "utf8").trim().split("\n").length, 2);
    const again = execFileSync("node", [cli, "train", "--config", join(dir, "run.yaml")], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    assert.equal(again, "");
    assert.equal(statSync(meanFile).mtimeMs, fittedAt, "a finished step's compensators are not refitted");
    rmSync(join(second, "drift", "procrustes.safetensors"));
    execFileSync("node", [cli, "train", "--config", join(dir, "run.yaml")], { stdio: "pipe" });
    assert.ok(existsSync(join(second, "drift", "procrustes.safetensors")), "a missing compensator is fitted on rerun");
    writeFileSync(join(dir, "bad.yaml"), "run: x\ninit: m\ntasks:\n  - { name: a, steps: 1 }\n");
    const r = spawnSync("node", [cli, "train", "--config", join(dir, "bad.yaml")], { encoding: "utf8" });
    assert.match(r.stderr, /bad\.yaml: tasks\.0: give exactly one of 'data' and 'beir'/);
    const flags = spawnSync("node", [cli, "train", "--init", "x"], { encoding: "utf8" });
    assert.match(flags.stderr, /give --config, or the flags --data \(or --beir\), --out, --steps/);
  });
});

describe("GradCache and a learned logit scale", () => {
  const base = {
    data: [join(fixture, "train.jsonl")],
    init: join(FIXTURES, "bert-tiny"),
    batchSize: 6,
    negatives: 1,
    lr: 1e-3,
    warmup: 0,
    steps: 2,
    kdQuery: 1,
    kdDoc: 1,
    shuffle: false,
    maxLength: 32,
  };
  it("GradCache in chunks of 2 gives the same losses and weights as whole-batch steps", async () => {
    const plain = tmp();
    const cached = tmp();
    const logs: [number[], number[]] = [[], []];
    await train({ ...base, out: plain, onStep: (e) => logs[0].push(e.loss) });
    await train({ ...base, out: cached, gradCacheChunk: 2, onStep: (e) => logs[1].push(e.loss) });
    // chunks pad differently from the whole batch, so agreement is to float32 rounding (1e-5, as the fixture)
    assertClose(logs[1], logs[0], 1e-5, 0, "losses");
    const a = loadSafetensors(join(plain, "model.safetensors"));
    const b = loadSafetensors(join(cached, "model.safetensors"));
    for (const [name, w] of a) assertClose(b.get(name)!.toArray(), w.toArray(), 1e-5, 0, name);
  });
  it("a trainable logit scale moves, is logged, and fixed scales stay put", async () => {
    const scales: number[] = [];
    await train({ ...base, out: tmp(), trainableScale: true, lr: 0.05, onStep: (e) => scales.push(e.logit_scale) });
    assertClose([scales[0]!], [50], 1e-4, 0, "starting scale (float32 log/exp)");
    assert.ok(Math.abs(scales[1]! - 50) > 0.1, `scale did not move: ${scales[1]}`);
    const fixed: number[] = [];
    await train({ ...base, out: tmp(), onStep: (e) => fixed.push(e.logit_scale) });
    assert.deepEqual(fixed, [50, 50]);
  });
});

describe("mixed precision", () => {
  it("bf16 compute with float32 master weights tracks the float32 run and keeps float32 weights", async () => {
    const base = {
      data: [join(fixture, "train.jsonl")],
      init: join(FIXTURES, "bert-tiny"),
      batchSize: 3,
      negatives: 1,
      lr: 1e-3,
      warmup: 0,
      steps: 2,
      shuffle: false,
      maxLength: 32,
    };
    const fp32: number[] = [];
    const bf16: number[] = [];
    await train({ ...base, out: tmp(), precision: "fp32", onStep: (e) => fp32.push(e.loss) });
    const out = tmp();
    await train({ ...base, out, precision: "bf16", onStep: (e) => bf16.push(e.loss) });
    // bfloat16 keeps 8 bits of mantissa: the losses agree to about 1e-2
    assertClose(bf16, fp32, 3e-2, 0, "bf16 vs fp32 losses");
    assert.notDeepEqual(bf16, fp32);
    const w = loadSafetensors(join(out, "model.safetensors"));
    assert.ok([...w.values()].every((t) => t.dtype === "float32"));
  });
});
