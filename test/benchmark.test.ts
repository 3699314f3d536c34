/**
 * The continual-retrieval benchmark end to end in CI size: real Debian text (two tasks), a
 * minute-sized model, every stage, and a report whose structure and numbers are checked. Rerunning
 * resumes from what is on disk.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { readQrels } from "../src/data/beir.js";
import { SETTINGS } from "../src/eval/report.js";

const cli = new URL("../src/cli/main.js", import.meta.url).pathname;

const CONFIG = `
name: ci
out: run
device: cpu
seed: 0
max_length: 32
batch_size: 64
data:
  kind: offline
  dir: data
  tasks: [foldoc, wordnet]
  train_pairs: 120
  test_queries: 30
  corpus: 150
  general_pairs: 300
  max_words: 32
base:
  pretrain: { vocab: 600, hidden: 32, layers: 1, heads: 2, intermediate: 64, max_positions: 64, steps: 12, batch_size: 16, lr: 2.0e-3, warmup: 2 }
mine_negatives: 1
train: { steps: 6, batch_size: 8, lr: 1.0e-3, warmup: 1, negatives: 1 }
joint: every
drift_queries: 60
`;

describe("continual retrieval benchmark (CI size)", () => {
  it("builds the data, trains every chain, evaluates every setting and reports", async () => {
    const dir = mkdtempSync(join(tmpdir(), "qdc-bench-"));
    writeFileSync(join(dir, "ci.yaml"), CONFIG);
    const out = execFileSync("node", [cli, "bench", "run", "--config", join(dir, "ci.yaml")], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    // the data: BEIR folders whose test queries are not training queries
    for (const task of ["foldoc", "wordnet"]) {
      const t = join(dir, "data", task);
      const corpus = readFileSync(join(t, "corpus.jsonl"), "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l)._id);
      const queries = readFileSync(join(t, "queries.jsonl"), "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l).text);
      const train = readFileSync(join(t, "train.jsonl"), "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l).query);
      assert.equal(corpus.length, 150);
      assert.equal(queries.length, 30);
      assert.equal(train.length, 120);
      assert.ok(!queries.some((q: string) => train.includes(q)), `${task}: a test query is a training query`);
      const qrels = await readQrels(join(t, "qrels", "test.tsv"));
      assert.equal(qrels.size, 30);
      for (const docs of qrels.values())
        for (const d of docs.keys()) assert.ok(corpus.includes(d), `${task}: ${d} is not in the corpus`);
    }
    assert.ok(existsSync(join(dir, "data", "README.md")));
    // every step of both chains has its compensators, the KD chain also auto
    for (const t of ["foldoc", "wordnet"]) {
      assert.ok(existsSync(join(dir, "run", "ft", t, "drift", "mean.safetensors")));
      assert.ok(existsSync(join(dir, "run", "kd", t, "drift", "auto.safetensors")));
    }
    const r = JSON.parse(readFileSync(join(dir, "run", "results.json"), "utf8"));
    assert.deepEqual(r.tasks, ["foldoc", "wordnet"]);
    assert.equal(r.measure, "ndcg_cut_10");
    assert.deepEqual(Object.keys(r.settings), [...SETTINGS]);
    for (const [key, s] of Object.entries(r.settings) as [string, { R: (number | null)[][]; average: number }][]) {
      assert.equal(s.R.length, 2);
      assert.equal(s.R[0]![1], null, `${key}: task 2 is not evaluated before it arrives`);
      for (const v of [s.R[0]![0], s.R[1]![0], s.R[1]![1]])
        assert.ok(typeof v === "number" && v >= 0 && v <= 1, `${key}: ${v}`);
      assert.ok(Math.abs(s.average - (s.R[1]![0]! + s.R[1]![1]!) / 2) < 1e-12);
    }
    // identities of the protocol: on the task just trained, no re-index = re-index = QDC
    const R = (k: string) => r.settings[k].R as number[][];
    assert.equal(R("ft_no_reindex")[1]![1], R("ft_reindex")[1]![1]);
    assert.equal(R("ft_qdc")[1]![1], R("ft_reindex")[1]![1]);
    // zero-shot does not change with T
    assert.equal(R("zero_shot")[0]![0], R("zero_shot")[1]![0]);
    // the table, the figure and per-stage wall times
    assert.match(out, /\| setting \| foldoc \| wordnet \| average \| BWT \| forgetting \|/);
    assert.match(out, /\| FT \+ QDC \(mean\) \| \d+\.\d \| \d+\.\d \| \d+\.\d \| [+-]?\d+\.\d \| -?\d+\.\d \|/);
    const svg = readFileSync(join(dir, "run", "figure.svg"), "utf8");
    assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    assert.equal((svg.match(/<rect x="\d+" y="\d+" width="33"/g) ?? []).length, SETTINGS.length * 3);
    assert.deepEqual(
      r.stages.map((s: { stage: string }) => s.stage),
      ["data", "base model", "mine negatives", "train FT", "train FT+KD", "train joint", "index + evaluate"],
    );
    // a rerun resumes: nothing is trained or evaluated again, the numbers are the same
    const before = readFileSync(join(dir, "run", "cells.jsonl"), "utf8");
    execFileSync("node", [cli, "bench", "run", "--config", join(dir, "ci.yaml")], { stdio: "pipe" });
    assert.equal(readFileSync(join(dir, "run", "cells.jsonl"), "utf8"), before);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, "run", "results.json"), "utf8")).settings, r.settings);
  });

  it("rejects a bad config naming the file and the field", () => {
    const dir = mkdtempSync(join(tmpdir(), "qdc-bench-"));
    writeFileSync(
      join(dir, "bad.yaml"),
      CONFIG.replace("tasks: [foldoc, wordnet]", "tasks: [foldoc, nope]").replace("steps: 6,", "steps: -1,"),
    );
    const r = spawnSync("node", [cli, "bench", "run", "--config", join(dir, "bad.yaml")], { encoding: "utf8" });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /bad\.yaml: .*data\.tasks\.1: /);
    assert.match(r.stderr, /train\.steps: /);
    assert.ok(!existsSync(join(dir, "run")), "nothing is written for a bad config");
  });
});
