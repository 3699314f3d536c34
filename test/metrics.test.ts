/**
 * Retrieval metrics as trec_eval 10.0 computes them, on hand-computed cases: graded relevance,
 * judgments that are all 0, queries missing from the run or from the qrels, -c, score ties broken
 * by document id in strcmp order, cut-offs beyond the run, printf rounding; and TREC files.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { readQrels, writeQrels } from "../src/data/beir.js";
import {
  compareBytes,
  evaluate,
  formatEvaluation,
  measureLabel,
  parseMeasures,
  printfFixed,
  rankResults,
} from "../src/eval/metrics.js";
import { readRun, writeRun } from "../src/eval/trec.js";

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
  ["q3", new Map([["d9", 0]])], // judged, nothing relevant: averaged, scoring 0
  ["q4", new Map([["d7", 1]])], // relevant but absent from the run: skipped (counted as 0 with -c)
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
  ["q9", new Map([["d1", 0.3]])], // not judged: ignored
]);
const m = (...specs: string[]) => specs.flatMap(parseMeasures);
const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} vs ${b}`);

// q1 by hand: ranking dA(–) d2(1) d1(2) d4(1); 3 relevant; ideal gains 2, 1, 1
const idcg3 = 2 + 1 / log2(3) + 1 / 2;
const q1 = {
  ndcg_cut_3: (1 / log2(3) + 2 / 2) / idcg3,
  ndcg_cut_10: (1 / log2(3) + 2 / 2 + 1 / log2(5)) / idcg3,
  recall_3: 2 / 3,
  map_cut_3: (1 / 2 + 2 / 3) / 3,
  map: (1 / 2 + 2 / 3 + 3 / 4) / 3,
  recip_rank: 1 / 2,
  recip_rank_1: 0,
  P_3: 2 / 3,
  P_10: 3 / 10, // k beyond the run still divides by k
};

describe("trec_eval metrics", () => {
  it("orders by score, ties by document id descending in strcmp (UTF-8 byte) order", () => {
    assert.deepEqual(rankResults(run.get("q1")!), ["dA", "d2", "d1", "d4"]);
    // UTF-16 order would put U+FF21 (Ａ) above U+1F600; UTF-8 bytes (F0 > EF) do not
    const tied = new Map(["B", "a", "b", "z", "é", "\uFF21", "\u{1F600}"].map((d) => [d, 1]));
    assert.deepEqual(rankResults(tied), ["\u{1F600}", "\uFF21", "é", "z", "b", "a", "B"]);
    assert.ok(compareBytes("\u{1F600}", "\uFF21") > 0 && compareBytes("ab", "abc") < 0 && compareBytes("x", "x") === 0);
  });

  it("matches hand-computed values per query, with graded gains", () => {
    const e = evaluate(
      qrels,
      run,
      m("ndcg_cut.3,10", "recall.3", "map_cut.3", "map", "recip_rank", "recip_rank.1", "P.3,10"),
    );
    const r1 = e.perQuery.get("q1")!;
    for (const [label, v] of Object.entries(q1)) close(r1[label]!, v);
  });

  it("averages over every judged query in the run, those judged all 0 included (they score 0)", () => {
    const e = evaluate(qrels, run, m("ndcg_cut.3", "recall.3", "map", "recip_rank", "P.3"));
    assert.deepEqual([...e.perQuery.keys()], ["q1", "q2", "q3"]);
    assert.equal(e.queries, 3);
    for (const q of ["q2", "q3"]) assert.deepEqual(Object.values(e.perQuery.get(q)!), [0, 0, 0, 0, 0]);
    close(e.mean.recall_3!, q1.recall_3 / 3); // not / 2: q3 counts
    close(e.mean.ndcg_cut_3!, q1.ndcg_cut_3 / 3);
    close(e.mean.P_3!, q1.P_3 / 3);
    assert.deepEqual(e.skipped, ["q4"]);
    assert.deepEqual(e.unjudged, ["q9"]);
  });

  it("counts judged queries missing from the run as 0 with allQueries (-c)", () => {
    const e = evaluate(qrels, run, m("ndcg_cut.3", "recall.3"), { allQueries: true });
    assert.deepEqual([...e.perQuery.keys()], ["q1", "q2", "q3", "q4"]);
    assert.deepEqual(e.perQuery.get("q4"), { recall_3: 0, ndcg_cut_3: 0 });
    assert.equal(e.queries, 4);
    assert.deepEqual(e.skipped, []);
    close(e.mean.ndcg_cut_3!, q1.ndcg_cut_3 / 4);
    // a query with an empty result list is a query missing from the run (a run file cannot hold it)
    const empty = new Map([...run, ["q4", new Map<string, number>()]]);
    assert.deepEqual(evaluate(qrels, empty, m("recall.3")).skipped, ["q4"]);
  });

  it("reads judgments as integers (atol) and ignores negative ones", () => {
    const judged = new Map([
      [
        "q",
        new Map([
          ["a", 1.7], // level 1
          ["b", 0.5], // level 0: judged, not relevant, no gain
          ["c", -1], // not relevant, no gain
          ["d", 2],
        ]),
      ],
    ]);
    const r = new Map([
      [
        "q",
        new Map([
          ["b", 0.9],
          ["c", 0.8],
          ["a", 0.7],
        ]),
      ],
    ]);
    const e = evaluate(judged, r, m("ndcg_cut.3", "recall.3", "P.3", "recip_rank"));
    const row = e.perQuery.get("q")!;
    close(row.recall_3!, 1 / 2);
    close(row.P_3!, 1 / 3);
    close(row.recip_rank!, 1 / 3);
    close(row.ndcg_cut_3!, 1 / 2 / (2 + 1 / log2(3)));
  });

  it("parses -m like trec_eval: cut-offs sorted, duplicates refused; outputs in trec_eval's order", () => {
    assert.deepEqual(parseMeasures("P.10,5").map(measureLabel), ["P_5", "P_10"]);
    assert.throws(() => parseMeasures("P.5,5"), /cut-off 5 given twice/);
    assert.throws(() => parseMeasures("bpref"), /unknown measure 'bpref'/);
    assert.throws(() => parseMeasures("ndcg_cut"), /needs a cut-off, e.g. ndcg_cut.10/);
    assert.throws(() => parseMeasures("recall.0"), /cut-off '0' is not a positive integer/);
    assert.throws(() => parseMeasures("map.10"), /map takes no cut-off \(use map_cut.10\)/);
    const e = evaluate(
      qrels,
      run,
      m("map_cut.3", "ndcg_cut.3", "recall.3", "P.3", "recip_rank.1", "recip_rank", "map", "P.3"),
    );
    assert.deepEqual(e.measures.map(measureLabel), [
      "map",
      "recip_rank",
      "recip_rank_1",
      "P_3",
      "recall_3",
      "ndcg_cut_3",
      "map_cut_3",
    ]);
    assert.deepEqual(Object.keys(e.mean), e.measures.map(measureLabel));
  });

  it("prints values as printf's %6.4f does (exact ties to even)", () => {
    assert.equal(printfFixed(0.03125, 4), "0.0312"); // toFixed gives 0.0313
    assert.equal(printfFixed(0.21875, 4), "0.2188");
    assert.equal(printfFixed(1 / 3, 4), "0.3333");
    assert.equal(printfFixed(0.00015, 4), "0.0001"); // below the tie in binary
    assert.equal(printfFixed(1, 4), "1.0000");
    // 32 queries, one with P_1 = 1: the mean 1/32 prints as trec_eval prints it
    const many = new Map(Array.from({ length: 32 }, (_, i) => [`q${i}`, new Map([["d", i === 0 ? 1 : 0]])]));
    const hits = new Map(Array.from({ length: 32 }, (_, i) => [`q${i}`, new Map([["d", 1]])]));
    assert.match(formatEvaluation(evaluate(many, hits, m("P.1"))), /^P_1 {19}\tall\t0\.0312$/m);
  });

  it("qdc eval prints trec_eval's lines and reads TREC and BEIR qrels", async () => {
    const dir = mkdtempSync(join(tmpdir(), "qdc-eval-"));
    const qrelsTrec = join(dir, "qrels.txt");
    writeFileSync(qrelsTrec, "# judged by hand\nq1 0 d1 2\nq1 0 d2 1\nq1 0 d3 0\nq1 0 d4 1\nq2 0 d5 1\nq3\t0\td9 0\n");
    const qrelsBeir = join(dir, "test.tsv");
    writeFileSync(
      qrelsBeir,
      "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t1\nq1\td3\t0\nq1\td4\t1\nq2\td5\t1\nq3\td9\t0\n",
    );
    const runFile = join(dir, "run.trec");
    writeFileSync(
      runFile,
      "# a comment\nq1 Q0 d4 4 0.1 x\nq1 Q0 d1 3 0.5 x\n\nq1 Q0 dA 1 0.9 x\nq1\tQ0 d2 2 0.5 x\nq2 Q0 d6 1 0.3 x\nq3 Q0 d9 1 0.3 x\nq9 Q0 d1 1 1 x\n",
    );
    const out = (qrelsFile: string) =>
      execFileSync(
        "node",
        [CLI, "eval", "--qrels", qrelsFile, "--run", runFile, "-m", "recall.3", "-m", "ndcg_cut.3", "-q"],
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
    const ndcg = q1.ndcg_cut_3;
    assert.deepEqual(lines, [
      ["recall_3", "q1", "0.6667"],
      ["ndcg_cut_3", "q1", ndcg.toFixed(4)],
      ["recall_3", "q2", "0.0000"],
      ["ndcg_cut_3", "q2", "0.0000"],
      ["recall_3", "q3", "0.0000"],
      ["ndcg_cut_3", "q3", "0.0000"],
      ["num_q", "all", "3"],
      ["recall_3", "all", "0.2222"],
      ["ndcg_cut_3", "all", (ndcg / 3).toFixed(4)],
    ]);
    assert.match(text, /^recall_3 {14}\tq1\t0\.6667$/m); // %-22s\t%s\t%6.4f
    const json = JSON.parse(
      execFileSync("node", [CLI, "eval", "--qrels", qrelsTrec, "--run", runFile, "--json"], { encoding: "utf8" }),
    );
    assert.deepEqual(Object.keys(json.mean), ["recip_rank_10", "recall_100", "ndcg_cut_10", "map_cut_100"]);
    assert.equal(json.queries, 3);
    const bad = spawnSync("node", [CLI, "eval", "--qrels", qrelsTrec, "--run", runFile, "-m", "ndcg"], {
      encoding: "utf8",
    });
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /unknown measure .ndcg.: use one of map, recip_rank\[\.K\], P\.K/);
  });
});

describe("TREC files", () => {
  it("readRun names the file and line of bad input, and the id that holds whitespace", async () => {
    const dir = mkdtempSync(join(tmpdir(), "qdc-trec-"));
    const runFile = join(dir, "run.trec");
    writeFileSync(runFile, "q1 Q0 d1 1 0.5 x\nq1 Q0 d1 2 0.4 x\n");
    await assert.rejects(readRun(runFile), /run\.trec:2: document 'd1' appears twice for query 'q1'/);
    writeFileSync(runFile, "q1 Q0 d1 1 0.5 x\nq:foldoc:control unit Q0 foldoc:x 1 0.5 qdc\n");
    await assert.rejects(
      readRun(runFile),
      /run\.trec:2: expected 6 columns \(qid Q0 docid rank score tag\), got 7; the query id "q:foldoc:control unit" seems to contain whitespace/,
    );
    writeFileSync(runFile, "q1 Q0 foldoc:control unit 1 0.5 qdc\n");
    await assert.rejects(
      readRun(runFile),
      /run\.trec:1: .*the document id "foldoc:control unit" seems to contain whitespace/,
    );
    writeFileSync(runFile, "q1 Q0 d1 1 high x\n");
    await assert.rejects(readRun(runFile), /run\.trec:1: score "high" is not a number/);
    const qrelsFile = join(dir, "qrels.txt");
    writeFileSync(qrelsFile, "q1 0 d1 1\nq:foldoc:control unit 0 foldoc:x 1\n");
    await assert.rejects(readQrels(qrelsFile), /qrels\.txt:2: .*got 5; the query id "q:foldoc:control unit" seems to/);
    writeFileSync(qrelsFile, "q1 0 d1 1\nq1 0 d1 2\n");
    await assert.rejects(
      readQrels(qrelsFile),
      /qrels\.txt:2: query 'q1', document 'd1' is judged again with another score/,
    );
  });

  it("the writers refuse ids a TREC file cannot hold, naming the id, and write nothing", () => {
    const dir = mkdtempSync(join(tmpdir(), "qdc-trec-"));
    const runFile = join(dir, "run.trec");
    const hit = (id: string) => ({ id, score: 0.5 });
    assert.throws(
      () => writeRun(runFile, ["q1", "q:foldoc:control unit"], [[hit("d1")], [hit("d2")]]),
      /run\.trec: cannot write it: the query id "q:foldoc:control unit" contains whitespace/,
    );
    assert.throws(
      () => writeRun(runFile, ["q1"], [[hit("a\u00a0b")]]),
      /the document id "a\u00a0b" contains whitespace/,
    );
    assert.throws(() => writeRun(runFile, ["#1"], [[hit("d")]]), /query id "#1" starts with '#'/);
    assert.throws(() => writeRun(runFile, ["q1"], [[hit("d")]], "my run"), /the run tag "my run" contains whitespace/);
    assert.throws(() => readFileSync(runFile), /ENOENT/);
    const qrelsFile = join(dir, "test.tsv");
    assert.throws(
      () => writeQrels(qrelsFile, [["q1", "foldoc:control unit", 1]]),
      /test\.tsv: cannot write it: the document id "foldoc:control unit" contains whitespace/,
    );
    writeQrels(qrelsFile, [["q1", "d1", 1]]);
    assert.equal(readFileSync(qrelsFile, "utf8"), "query-id\tcorpus-id\tscore\nq1\td1\t1\n");
    writeRun(runFile, ["q1"], [[hit("d1"), { id: "d2", score: 0.25 }]]);
    assert.equal(readFileSync(runFile, "utf8"), "q1 Q0 d1 1 0.500000 qdc\nq1 Q0 d2 2 0.250000 qdc\n");
  });
});
