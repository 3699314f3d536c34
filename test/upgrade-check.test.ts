/**
 * The pre-cutover check: overlap@k between the current and the candidate's compensated results,
 * nDCG@10 with judgments (whole store, and a sub-corpus re-embedded with the candidate), the
 * minimum an upgrade can require, and `qdc upgrade check`.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fitBetweenModels } from "../src/drift/between-models.js";
import { hashModel } from "../src/lineage/index.js";
import { InlineEncoder } from "../src/server/encoder.js";
import { loadCorpus } from "../src/server/load.js";
import { checkUpgrade, overlapAt, pseudoQuery } from "../src/server/upgrade-check.js";
import { LanceStore } from "../src/store/lancedb.js";
import { derivedModel, FIXTURES, startService, trainedBertTiny, WORDS, wordCorpus } from "./helpers.js";

const cli = new URL("../src/cli/main.js", import.meta.url).pathname;
const TOKEN = "t0ken";

describe("overlap@k", () => {
  it("is the mean share of each query's current top-k kept by the other list", () => {
    const h = (...ids: string[]) => ids.map((id, i) => ({ id, score: 1 - i / 10, version: "v" }));
    // query 1 keeps 2 of 3, query 2 keeps 0 of 3, query 3 keeps all: (2/3 + 0 + 1) / 3
    const got = overlapAt(
      [h("a", "b", "c"), h("d", "e", "f"), h("g", "h", "i")],
      [h("c", "a", "x"), h("x", "y", "z"), h("i", "h", "g")],
      3,
    );
    assert.ok(Math.abs(got - 5 / 9) < 1e-12, String(got));
    // only the first k of each list count
    assert.equal(overlapAt([h("a", "b")], [h("b", "a")], 1), 0);
    assert.equal(pseudoQuery("  one two\tthree  four ", 3), "one two three");
  });
});

describe("upgrade check", () => {
  const dir = mkdtempSync(join(tmpdir(), "qdc-upcheck-"));
  const old = join(FIXTURES, "bert-tiny");
  const child = trainedBertTiny(dir, { lineage: true });
  fitBetweenModels({ oldDir: old, newDir: child, queries: WORDS.map((w) => `about the ${w}`), methods: ["mean"] });
  // a light perturbation keeps nearly every result; a heavy one keeps almost none
  const light = derivedModel(old, dir, "light", { seed: 2, scale: 0.05 });
  const heavy = derivedModel(old, dir, "heavy", { seed: 3, scale: 30 });
  const N = 240;
  const corpus = wordCorpus(dir, N);
  // a query per word; judged for the first six words: relevant, the documents that name it first
  const queries = join(dir, "queries.jsonl");
  writeFileSync(queries, `${WORDS.map((w) => JSON.stringify({ _id: `q-${w}`, text: `about the ${w}` })).join("\n")}\n`);
  const qrels = join(dir, "qrels.tsv");
  const judged = WORDS.slice(0, 6).flatMap((w, j) =>
    Array.from({ length: N }, (_, i) => i)
      .filter((i) => i % 12 === j)
      .map((i) => `q-${w}\tdoc${i}\t1`),
  );
  writeFileSync(qrels, `query-id\tcorpus-id\tscore\n${judged.join("\n")}\n`);
  const storeDir = join(dir, "store");
  let store: LanceStore;

  before(async () => {
    store = await LanceStore.open(storeDir, { dim: 64, fields: {} });
    await loadCorpus(store, old, corpus);
  });
  after(async () => {
    await store.close();
  });

  it("the current model against itself: overlap 1 and the same nDCG however it is measured", async () => {
    const enc = new InlineEncoder();
    const targets = Object.keys(await store.versions());
    const v = (await enc.load({ dir: old, mode: "mean" }, targets)).version;
    const { readAllIdTexts } = await import("../src/data/texts.js");
    const { readQrels } = await import("../src/data/beir.js");
    const r = await checkUpgrade({
      store,
      encoder: enc,
      current: v,
      candidate: v,
      queries: await readAllIdTexts(queries),
      qrels: await readQrels(qrels),
      subCorpus: 100,
    });
    assert.equal(r.overlap, 1);
    assert.equal(r.source, "queries");
    assert.equal(r.queries, 12);
    assert.ok(r.ndcg && r.ndcg.current > 0 && r.ndcg.current === r.ndcg.compensated, JSON.stringify(r.ndcg));
    // the sub-corpus holds every judged document (120) however small it was asked to be
    assert.equal(r.subCorpus?.documents, 120);
    const sc = r.subCorpus!;
    assert.ok(
      Math.abs(sc.current - sc.compensated) < 1e-12 && Math.abs(sc.current - sc.reindexed) < 1e-6,
      JSON.stringify(sc),
    );
    await enc.close();
  });

  it("an upgrade below the required overlap is refused with the numbers, one above goes through", async () => {
    const s = await LanceStore.open(join(dir, "served"), { dim: 64, fields: {} });
    await loadCorpus(s, old, corpus);
    const { service, app, base } = await startService(s, old, { token: TOKEN });
    const post = async (body: unknown) => {
      const r = await fetch(`${base}/admin/upgrade`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${TOKEN}` },
        body: JSON.stringify(body),
      });
      return { status: r.status, body: (await r.json()) as Record<string, unknown> };
    };
    try {
      const refused = await post({ model: heavy, minOverlap: 0.5 });
      assert.equal(refused.status, 400, JSON.stringify(refused.body));
      assert.equal(refused.body.error, "upgrade_refused");
      assert.match(
        String(refused.body.message),
        /keeps too little of the current results: overlap@10 0\.\d{3} on 200 pseudo-queries, below the minimum overlap 0\.5$/,
      );
      assert.equal(service.model.version, hashModel(old), "still the old model");
      const bad = await post({ model: light, minOverlap: 1.5 });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.error, "bad_request");
      const ok = await post({ model: light, minOverlap: 0.5 });
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      const check = ok.body.check as { overlap: number; queries: number };
      assert.ok(check.overlap >= 0.5 && check.queries === 200, JSON.stringify(check));
      assert.equal(service.model.version, hashModel(light));
    } finally {
      await app.close();
      await service.close();
    }
  });

  it("`qdc upgrade check` prints the numbers and writes them as JSON", () => {
    const out = join(dir, "check.json");
    const r = spawnSync(
      "node",
      [
        cli,
        "upgrade",
        "check",
        "--store",
        storeDir,
        "--current",
        old,
        "--model",
        child,
        "--queries",
        queries,
        "--qrels",
        qrels,
        "--sub-corpus",
        "150",
        "--json",
        out,
      ],
      { encoding: "utf8" },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^[0-9a-f]{16} → [0-9a-f]{16}: overlap@10 [01]\.\d{3} on 12 queries; nDCG@10 current /);
    const j = JSON.parse(readFileSync(out, "utf8"));
    assert.equal(j.candidate, hashModel(child));
    assert.equal(j.subCorpus.documents, 150);
    for (const x of [j.overlap, j.ndcg.current, j.ndcg.compensated, j.subCorpus.reindexed])
      assert.ok(x >= 0 && x <= 1, JSON.stringify(j));
    // judgments without the queries they judge
    const bad = spawnSync("node", [cli, "upgrade", "check", "--store", storeDir, "--model", child, "--qrels", qrels], {
      encoding: "utf8",
    });
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /--qrels needs the --queries it judges/);
  });
});
