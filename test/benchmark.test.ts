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
import { type BenchmarkReport, renderSvg, SETTINGS, summarise } from "../src/eval/report.js";

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
    const first = spawnSync("node", [cli, "bench", "run", "--config", join(dir, "ci.yaml")], { encoding: "utf8" });
    assert.equal(first.status, 0, first.stderr);
    const out = first.stdout;
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
      for (const id of [...corpus, ...qrels.keys()]) assert.doesNotMatch(id, /\s/, `${task}: id '${id}'`);
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
    assert.equal((svg.match(/<rect class="cell" /g) ?? []).length, SETTINGS.length * 3);
    assert.deepEqual(
      r.stages.map((s: { stage: string }) => s.stage),
      [
        "data",
        "base model",
        "mine negatives",
        "train FT",
        "train FT+KD",
        "train joint",
        "index + evaluate",
        "re-index curves",
        "drift per step",
      ],
    );
    // drift per step, and the one-step gains read off the matrices
    assert.deepEqual(
      r.steps.map((s: { task: string }) => s.task),
      ["foldoc", "wordnet"],
    );
    for (const st of r.steps as { drift: Record<string, number>; picked: string[] }[]) {
      for (const chain of ["ft", "kd"]) assert.ok(st.drift[chain]! > 0 && st.drift[chain]! < 2, JSON.stringify(st));
      assert.equal(st.picked.length, 1);
    }
    assert.ok(Math.abs(r.steps[1].oneStep.ftQdc - (R("ft_qdc")[1]![0]! - R("ft_no_reindex")[1]![0]!)) < 1e-12);
    assert.match(out, /## Drift per step/);
    // FT+KD re-indexed: on the task just trained it is the same model on both sides as no re-index
    assert.equal(R("kd_reindex")[1]![1], R("kd_no_reindex")[1]![1]);
    // re-index curves of the old task: none re-embedded = the compensated cell, all = re-indexed
    assert.deepEqual(
      r.curves.map((c: { chain: string; merge: string }) => `${c.chain}/${c.merge}`),
      ["ft/calibrated", "ft/raw", "kd/calibrated", "kd/raw"],
    );
    for (const cv of r.curves as {
      chain: string;
      fractions: number[];
      pooled: Record<string, { mean: number[] }>;
      reach90: Record<string, number | null>;
    }[]) {
      const [comp, full] = cv.chain === "kd" ? ["kd_auto", "kd_reindex"] : ["ft_qdc", "ft_reindex"];
      assert.deepEqual(cv.fractions, [0, 0.05, 0.1, 0.25, 0.5, 1]);
      for (const order of ["random", "retrieved", "drift"]) {
        const m = cv.pooled[order]!.mean;
        assert.ok(Math.abs(m[0]! - R(comp!)[1]![0]!) < 1e-12, `${cv.chain} ${order} at 0%: ${m[0]} vs ${comp}`);
        assert.ok(Math.abs(m[5]! - R(full!)[1]![0]!) < 1e-12, `${cv.chain} ${order} at 100%: ${m[5]} vs ${full}`);
        const reach = cv.reach90[order];
        assert.ok(reach === null ? m[5]! <= m[0]! : cv.fractions.includes(reach as number), `${order}: ${reach}`);
      }
    }
    // paired comparisons over the 30 queries of the old task
    const keys = r.comparisons.map((c: { key: string }) => c.key);
    for (const k of ["qdc_vs_no_reindex", "auto_vs_qdc", "auto_vs_none", "kd_vs_ft", "kd_reindex_vs_kept"])
      assert.ok(keys.includes(k), `comparison ${k}`);
    for (const c of r.comparisons as {
      a: string;
      b: string;
      test: { n: number; delta: number; ci95: number[]; p: number };
    }[]) {
      assert.equal(c.test.n, 30);
      assert.ok(Math.abs(c.test.delta - (R(c.a)[1]![0]! - R(c.b)[1]![0]!)) < 1e-9, `${c.a} vs ${c.b}: Δ of the means`);
      assert.ok(c.test.ci95[0]! <= c.test.delta + 1e-12 && c.test.delta <= c.test.ci95[1]! + 1e-12);
      assert.ok(c.test.p > 0 && c.test.p <= 1);
    }
    assert.match(out, /## Paired comparisons/);
    assert.match(out, /## Re-index curves/);
    // the evaluation's details are in the JSONL log, not on the terminal
    assert.doesNotMatch(first.stderr, /eval after/);
    const evals = readFileSync(join(dir, "run", "bench.log.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l))
      .filter((e) => e.event === "eval");
    assert.equal(evals.length, SETTINGS.length * 3);
    assert.deepEqual(Object.keys(evals[0].scores), ["recip_rank_10", "recall_100", "ndcg_cut_10"]);
    // a rerun resumes: nothing is trained or evaluated again, the numbers are the same
    const before = readFileSync(join(dir, "run", "cells.jsonl"), "utf8");
    const curvesBefore = readFileSync(join(dir, "run", "curves.jsonl"), "utf8");
    execFileSync("node", [cli, "bench", "run", "--config", join(dir, "ci.yaml")], { stdio: "pipe" });
    assert.equal(readFileSync(join(dir, "run", "cells.jsonl"), "utf8"), before);
    assert.equal(readFileSync(join(dir, "run", "curves.jsonl"), "utf8"), curvesBefore);
    // calibration changes the merge of a partly re-embedded corpus
    const records = curvesBefore
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { chain: string; order: string; merge: string; scores: number[] });
    const differs = records.some((a) =>
      records.some(
        (b) =>
          a.chain === b.chain &&
          a.order === b.order &&
          a.merge === "calibrated" &&
          b.merge === "raw" &&
          a.scores.slice(1, -1).some((v, i) => v !== b.scores[i + 1]),
      ),
    );
    assert.ok(differs, "calibrated and raw merges differ somewhere between 0% and 100%");
    // other curve parameters: the curves are computed again, the cells reused
    writeFileSync(join(dir, "ci.yaml"), `${CONFIG}reindex_curves: { traffic: 50, sample: 40 }\n`);
    execFileSync("node", [cli, "bench", "run", "--config", join(dir, "ci.yaml")], { stdio: "pipe" });
    assert.equal(readFileSync(join(dir, "run", "cells.jsonl"), "utf8"), before);
    const after = readFileSync(join(dir, "run", "curves.jsonl"), "utf8")
      .trim()
      .split("\n");
    assert.equal(after.length, 2 * records.length, "every curve computed again with the new parameters");
    assert.deepEqual(JSON.parse(readFileSync(join(dir, "run", "results.json"), "utf8")).settings, r.settings);
  });

  it("with seeds: trains the chains per seed, shares what per_seed leaves out, reports mean ± std", () => {
    const dir = mkdtempSync(join(tmpdir(), "qdc-bench-seeds-"));
    const config = CONFIG.replace("seed: 0\n", "seed: 0\nseeds: [3, 4]\nper_seed: [train]\n").replace(
      "joint: every",
      "joint: final",
    );
    writeFileSync(join(dir, "ci.yaml"), config);
    const run = spawnSync("node", [cli, "bench", "run", "--config", join(dir, "ci.yaml")], { encoding: "utf8" });
    assert.equal(run.status, 0, run.stderr);
    const r = JSON.parse(readFileSync(join(dir, "run", "results.json"), "utf8"));
    assert.deepEqual(r.seeds, [3, 4]);
    // one base model and one joint model (first seed), a chain per seed
    assert.ok(existsSync(join(dir, "run", "base", "done.json")));
    assert.ok(existsSync(join(dir, "run", "joint", "T2", "done.json")));
    for (const s of [3, 4])
      assert.ok(existsSync(join(dir, "run", `seed-${s}`, "kd", "wordnet", "drift", "auto.safetensors")));
    assert.ok(!existsSync(join(dir, "run", "seed-3", "base")));
    // the mean and sample std of the two seeds' cells, recomputed from the cells
    const cell = (seed: number, setting: string) =>
      r.cells.find(
        (c: { seed: number; setting: string; T: number; j: number }) =>
          c.seed === seed && c.setting === setting && c.T === 2 && c.j === 1,
      ).scores.ndcg_cut_10 as number;
    for (const setting of ["ft_no_reindex", "kd_auto", "kd_reindex"]) {
      const [a, b] = [cell(3, setting), cell(4, setting)];
      assert.ok(Math.abs(r.settings[setting].R[1][0] - (a + b) / 2) < 1e-12);
      assert.ok(Math.abs(r.settings[setting].std.R[1][0] - Math.abs(a - b) / Math.SQRT2) < 1e-12);
      assert.equal(r.settings[setting].seeds, 2);
    }
    assert.equal(r.settings.joint.seeds, 1);
    assert.equal(r.settings.zero_shot.seeds, 1, "the shared base is evaluated once");
    assert.equal(r.settings.joint.std.average, null);
    // per-seed deltas of a comparison are those of the seeds' means
    const c = r.comparisons.find((x: { key: string }) => x.key === "kd_vs_ft");
    assert.deepEqual(
      c.perSeed.map((p: { seed: number }) => p.seed),
      [3, 4],
    );
    assert.ok(c.ci95Seeds[0] <= c.test.delta + 1e-12 && c.test.delta <= c.ci95Seeds[1] + 1e-12);
    for (const p of c.perSeed as { seed: number; delta: number }[])
      assert.ok(Math.abs(p.delta - (cell(p.seed, "kd_no_reindex") - cell(p.seed, "ft_no_reindex"))) < 1e-9);
    assert.match(run.stdout, /\| FT \+ QDC \(mean\) \| \d+\.\d ± \d+\.\d \|/);
    assert.deepEqual(
      r.stages.map((s: { stage: string }) => s.stage),
      [
        "data",
        "base model",
        "mine negatives",
        "train FT (seed 3)",
        "train FT+KD (seed 3)",
        "train joint",
        "index + evaluate (seed 3)",
        "re-index curves (seed 3)",
        "drift per step (seed 3)",
        "train FT (seed 4)",
        "train FT+KD (seed 4)",
        "index + evaluate (seed 4)",
        "re-index curves (seed 4)",
        "drift per step (seed 4)",
      ],
    );
    const svg = readFileSync(join(dir, "run", "figure.svg"), "utf8");
    assert.equal(
      (svg.match(/class="error-bar"/g) ?? []).length,
      SETTINGS.length - 2,
      "error bars on the averages of every setting trained per seed",
    );
    assert.equal((svg.match(/<polyline class="curve"/g) ?? []).length, 12, "3 orders × 2 chains × 2 merges");
    // --seeds 3: a one-seed report from what seed 3 already holds, nothing trained or evaluated again
    const cells3 = readFileSync(join(dir, "run", "seed-3", "cells.jsonl"), "utf8");
    const one = spawnSync("node", [cli, "bench", "run", "--config", join(dir, "ci.yaml"), "--seeds", "3"], {
      encoding: "utf8",
    });
    assert.equal(one.status, 0, one.stderr);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, "run", "results.json"), "utf8")).seeds, [3]);
    assert.equal(readFileSync(join(dir, "run", "seed-3", "cells.jsonl"), "utf8"), cells3);
    const bad = spawnSync("node", [cli, "bench", "run", "--config", join(dir, "ci.yaml"), "--seeds", "1,x"], {
      encoding: "utf8",
    });
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /--seeds takes non-negative integers separated by commas, got '1,x'/);
  });

  it("draws a figure whose text stays on the canvas, off the cells, with a legend and axis titles", () => {
    const tasks = ["debian", "wordnet", "cqadupstack-mathematica", "man", "python"];
    const n = tasks.length;
    const cells: BenchmarkReport["cells"] = [];
    let k = 0;
    for (const setting of SETTINGS)
      for (let T = 1; T <= n; T++)
        for (let j = 1; j <= T; j++) {
          if (setting === "joint" && T < n) continue; // joint: after the last task only
          cells.push({ setting, T, j, scores: { ndcg_cut_10: 0.05 + ((k++ * 37) % 90) / 100 } });
        }
    const report = summarise({
      name: "a-run-with-a-rather-long-name",
      machine: "AMD EPYC 7763 64-Core Processor (2 threads of 128), a long machine description that has to wrap",
      device: "cpu",
      threads: 2,
      tasks,
      measure: "ndcg_cut_10",
      cells,
      // re-index curves of the old tasks, with values spread over a wide range
      curves: ["ft", "kd"].flatMap((chain) =>
        (["random", "retrieved", "drift"] as const).flatMap((order) =>
          [1, 2, 3, 4].map((j) => ({
            seed: 0,
            chain,
            compensation: chain === "ft" ? "mean" : "auto",
            j,
            task: tasks[j - 1] as string,
            order,
            merge: "calibrated" as const,
            fractions: [0, 0.05, 0.1, 0.25, 0.5, 1],
            scores: [0.3, 0.1 * j, 0.35, 0.02 * j, 0.5, 0.42],
            queries: 200,
          })),
        ),
      ),
      stages: [],
    });
    assert.equal(report.curves.length, 2);
    const svg = renderSvg(report);
    const [, W, H] = (/^<svg [^>]*width="(\d+)" height="(\d+)"/.exec(svg) ?? []).map(Number) as number[];
    const attrs = (s: string) => Object.fromEntries([...s.matchAll(/([\w-]+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    const decode = (s: string) => s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
    // conservative text boxes, computed here from the SVG alone: 0.62 em a character (0.68 bold),
    // 0.8 em ascent, 0.25 em descent, rotated about the anchor as the transform says
    const texts = [...svg.matchAll(/<text ([^>]*)>([^<]*)<\/text>/g)].map((m) => {
      const a = attrs(m[1]!);
      const text = decode(m[2]!);
      const size = Number(a["font-size"]);
      const w = [...text].length * size * (a["font-weight"] === "bold" ? 0.68 : 0.62);
      const x = Number(a.x);
      const y = Number(a.y);
      const start = a["text-anchor"] === "end" ? -w : a["text-anchor"] === "middle" ? -w / 2 : 0;
      const angle = (Number(/rotate\((-?[\d.]+)/.exec(a.transform ?? "")?.[1] ?? 0) * Math.PI) / 180;
      const corners = [start, start + w].flatMap((dx) =>
        [-0.8 * size, 0.25 * size].map((dy) => [
          x + dx * Math.cos(angle) - dy * Math.sin(angle),
          y + dx * Math.sin(angle) + dy * Math.cos(angle),
        ]),
      );
      const xs = corners.map((c) => c[0]!);
      const ys = corners.map((c) => c[1]!);
      const box = { x0: Math.min(...xs), y0: Math.min(...ys), x1: Math.max(...xs), y1: Math.max(...ys) };
      return { cls: a.class ?? "", text, box };
    });
    const cellBoxes = [...svg.matchAll(/<rect class="cell" ([^>]*)>/g)].map((m) => {
      const a = attrs(m[1]!);
      const [x, y, w, h] = [a.x, a.y, a.width, a.height].map(Number) as [number, number, number, number];
      return { x0: x, y0: y, x1: x + w, y1: y + h };
    });
    type Box = { x0: number; y0: number; x1: number; y1: number };
    const overlap = (a: Box, b: Box) =>
      a.x0 < b.x1 - 0.5 && b.x0 < a.x1 - 0.5 && a.y0 < b.y1 - 0.5 && b.y0 < a.y1 - 0.5;
    const inside = (a: Box, b: Box) =>
      a.x0 >= b.x0 - 0.5 && a.x1 <= b.x1 + 0.5 && a.y0 >= b.y0 - 0.5 && a.y1 <= b.y1 + 0.5;
    const canvas = { x0: 0, y0: 0, x1: W!, y1: H! };
    assert.equal(cellBoxes.length, (SETTINGS.length - 1) * 15 + 5);
    for (const t of texts) {
      assert.ok(inside(t.box, canvas), `'${t.text}' (${t.cls}) leaves the ${W}×${H} canvas: ${JSON.stringify(t.box)}`);
      if (t.cls === "value")
        assert.ok(
          cellBoxes.some((c) => inside(t.box, c)),
          `value ${t.text} is not inside its cell`,
        );
      else for (const c of cellBoxes) assert.ok(!overlap(t.box, c), `'${t.text}' (${t.cls}) covers a cell`);
    }
    for (let i = 0; i < texts.length; i++)
      for (let j = i + 1; j < texts.length; j++) {
        const [a, b] = [texts[i]!, texts[j]!];
        if (a.cls === "col-label" && b.cls === "col-label") continue; // diagonal: their boxes overlap, the glyphs do not
        assert.ok(!overlap(a.box, b.box), `'${a.text}' (${a.cls}) overlaps '${b.text}' (${b.cls})`);
      }
    // every column label shows in full ("wordnet", not "rdnet" under a cell)
    assert.equal(texts.filter((t) => t.cls === "col-label" && t.text === "wordnet").length, SETTINGS.length);
    // the title wraps to the canvas
    const titles = texts.filter((t) => t.cls === "title" || t.cls === "subtitle");
    assert.ok(titles.length >= 3, "the long title and subtitle wrap");
    for (const t of titles) assert.ok(t.box.x1 <= W!, `title line '${t.text}' is wider than the canvas`);
    // the colour legend with its numeric scale: 0 … at least the best score
    const legend = /<g id="legend">([\s\S]*?)<\/g>/.exec(svg)?.[1] ?? "";
    assert.match(legend, /fill="url\(#scale\)"/);
    assert.match(svg, /<linearGradient id="scale"/);
    const ticks = [...legend.matchAll(/class="legend-tick"[^>]*>([^<]*)</g)].map((m) => Number(m[1]));
    assert.ok(ticks.length >= 3 && ticks[0] === 0, `legend ticks ${ticks}`);
    assert.ok(ticks.every((v, i) => i === 0 || v > ticks[i - 1]!));
    assert.ok(ticks.at(-1)! >= Math.max(...cells.map((c) => 100 * c.scores.ndcg_cut_10!)));
    // axis titles on every heatmap, and the bars' axis
    assert.equal(texts.filter((t) => t.text === "evaluated on").length, SETTINGS.length);
    assert.equal(texts.filter((t) => t.text === "after training on").length, SETTINGS.length);
    assert.ok(texts.some((t) => t.cls === "axis-title" && t.text === "average ndcg_cut_10 × 100"));
    // the joint panel holds its one row only
    const joint = /<g class="panel" data-setting="joint training \(upper bound\)">([\s\S]*?)<\/g>/.exec(svg)?.[1] ?? "";
    assert.equal((joint.match(/class="row-label"/g) ?? []).length, 1);
    assert.equal(new Set([...joint.matchAll(/<rect class="cell" x="[\d.]+" y="([\d.]+)"/g)].map((m) => m[1])).size, 1);
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
