/** Retrieval metrics on hand-computed cases: graded relevance, ties, unjudged queries, k beyond the run. */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { evaluate, parseMeasures, rankResults } from "../src/eval/metrics.js";
import { readRun } from "../src/eval/trec.js";

const CLI = join(import.meta.dirname, "..", "src", "cli", "main.js");
const log2 = Math.log2;

const qrels = new Map([
  [
    "q1",
    new Map([
      ["d1", 2],
      ["d2", 1],
      ["d3", 0],
      ["d4", 1],
    ]),
  ],
  ["q2", new Map([["d5", 1]])],
  ["q3", new Map([["d9", 0]])], // judged but nothing relevant: not averaged
  ["q4", new Map([["d7", 1]])], // relevant but absent from the run
]);
// q1: dA (unjudged) first, then d2 and d1 tied at 0.5 (trec_eval: larger id first → d2), then d4
const run = new Map([
  [
    "q1",
    new Map([
      ["d4", 0.1],
      ["d1", 0.5],
      ["dA", 0.9],
      ["d2", 0.5],
    ]),
  ],
  ["q2", new Map([["d6", 0.3]])],
  ["q3", new Map([["d9", 0.3]])],
]);
const m = (spec: string) => parseMeasures(spec);
const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} vs ${b}`);

describe("trec_eval metrics", () => {
  it("orders by score, ties by document id descending", () => {
    assert.deepEqual(rankResults(run.get("q1")!), ["dA", "d2", "d1", "d4"]);
  });

  it("matches hand-computed values per query", () => {
    const e = evaluate(qrels, run, [
      ...m("ndcg_cut.3,10"),
      ...m("recall.3"),
      ...m("map_cut.3"),
      ...m("recip_rank"),
      ...m("recip_rank.1"),
      ...m("P.3,10"),
    ]);
    const q1 = e.perQuery.get("q1")!;
    const idcg3 = 2 + 1 / log2(3) + 1 / 2;
    close(q1.ndcg_cut_3!, (1 / log2(3) + 2 / 2) / idcg3);
    close(q1.ndcg_cut_10!, (1 / log2(3) + 2 / 2 + 1 / log2(5)) / idcg3);
    close(q1.recall_3!, 2 / 3);
    close(q1.map_cut_3!, (1 / 2 + 2 / 3) / 3);
    close(q1.recip_rank!, 1 / 2);
    close(q1.recip_rank_1!, 0);
    close(q1.P_3!, 2 / 3);
    close(q1.P_10!, 3 / 10); // k beyond the run still divides by k
    assert.deepEqual(Object.values(e.perQuery.get("q2")!), [0, 0, 0, 0, 0, 0, 0, 0]);
    // q3 has no relevant document, q4 no results: neither is averaged
    assert.deepEqual([...e.perQuery.keys()], ["q1", "q2"]);
    assert.equal(e.queries, 2);
    close(e.mean.ndcg_cut_3!, q1.ndcg_cut_3! / 2);
  });

  it("counts judged queries missing from the run as 0 with allQueries (-c)", () => {
    const e = evaluate(qrels, run, m("ndcg_cut.3"), { allQueries: true });
    assert.deepEqual([...e.perQuery.keys()], ["q1", "q2", "q4"]);
    close(e.mean.ndcg_cut_3!, e.perQuery.get("q1")!.ndcg_cut_3! / 3);
  });

  it("rejects unknown measures and missing cut-offs", () => {
    assert.throws(() => parseMeasures("bpref"), /unknown measure 'bpref'/);
    assert.throws(() => parseMeasures("ndcg_cut"), /needs a cut-off, e.g. ndcg_cut.10/);
    assert.throws(() => parseMeasures("recall.0"), /cut-off '0' is not a positive integer/);
  });

  it("qdc eval prints trec_eval lines and reads TREC and BEIR qrels", async () => {
    const dir = mkdtempSync(join(tmpdir(), "qdc-eval-"));
    const qrelsTrec = join(dir, "qrels.txt");
    writeFileSync(qrelsTrec, "q1 0 d1 2\nq1 0 d2 1\nq1 0 d3 0\nq1 0 d4 1\nq2 0 d5 1\n");
    const qrelsBeir = join(dir, "test.tsv");
    writeFileSync(qrelsBeir, "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t1\nq1\td3\t0\nq1\td4\t1\nq2\td5\t1\n");
    const runFile = join(dir, "run.trec");
    writeFileSync(
      runFile,
      "q1 Q0 d4 4 0.1 x\nq1 Q0 d1 3 0.5 x\nq1 Q0 dA 1 0.9 x\nq1 Q0 d2 2 0.5 x\nq2 Q0 d6 1 0.3 x\n",
    );
    const out = (qrelsFile: string) =>
      execFileSync(
        "node",
        [CLI, "eval", "--qrels", qrelsFile, "--run", runFile, "-m", "ndcg_cut.3", "-m", "recall.3", "-q"],
        {
          encoding: "utf8",
        },
      );
    const text = out(qrelsTrec);
    assert.equal(out(qrelsBeir), text);
    const lines = text
      .trim()
      .split("\n")
      .map((l) => l.split("\t").map((c) => c.trim()));
    const ndcg = (1 / log2(3) + 1) / (2 + 1 / log2(3) + 0.5);
    assert.deepEqual(lines, [
      ["ndcg_cut_3", "q1", ndcg.toFixed(4)],
      ["recall_3", "q1", "0.6667"],
      ["ndcg_cut_3", "q2", "0.0000"],
      ["recall_3", "q2", "0.0000"],
      ["num_q", "all", "2"],
      ["ndcg_cut_3", "all", (ndcg / 2).toFixed(4)],
      ["recall_3", "all", "0.3333"],
    ]);
    const json = JSON.parse(
      execFileSync("node", [CLI, "eval", "--qrels", qrelsTrec, "--run", runFile, "--json"], { encoding: "utf8" }),
    );
    assert.deepEqual(Object.keys(json.mean), ["ndcg_cut_10", "recall_100", "map_cut_100", "recip_rank_10"]);
    // bad input names the file and line
    writeFileSync(runFile, "q1 Q0 d1 1 0.5 x\nq1 Q0 d1 2 0.4 x\n");
    await assert.rejects(readRun(runFile), /run\.trec:2: document 'd1' appears twice for query 'q1'/);
    const bad = spawnSync("node", [CLI, "eval", "--qrels", qrelsTrec, "--run", runFile, "-m", "ndcg"], {
      encoding: "utf8",
    });
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /unknown measure .ndcg.: use one of ndcg_cut.K/);
  });
});
