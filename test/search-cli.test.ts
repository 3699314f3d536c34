/** `qdc index build` and `qdc search` along a model lineage, with and without compensation. */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { EmbeddingModel, loadCompensator, tidy } from "../src/index.js";
import { hashModel } from "../src/lineage/index.js";
import { FIXTURES, trainedBertTiny } from "./helpers.js";

const cli = new URL("../src/cli/main.js", import.meta.url).pathname;
const run = (...args: string[]) => execFileSync("node", [cli, ...args], { stdio: "pipe" });

describe("index build + search", () => {
  it("searches an old index with compensated queries of a descendant model, and refuses unrelated models", () => {
    const dir = mkdtempSync(join(tmpdir(), "qdc-search-"));
    const oldDir = join(FIXTURES, "bert-tiny");
    const newDir = trainedBertTiny(dir, { lineage: true });
    const c = JSON.parse(readFileSync(join(FIXTURES, "bert-tiny/case.json"), "utf8")) as {
      queries: string[];
      docs: string[];
    };
    writeFileSync(
      join(dir, "corpus.jsonl"),
      c.docs.map((text, i) => JSON.stringify({ _id: `doc${i}`, text })).join("\n"),
    );
    writeFileSync(
      join(dir, "queries.jsonl"),
      c.queries.map((text, i) => JSON.stringify({ _id: `q${i}`, text })).join("\n"),
    );
    const common = ["--no-prefix", "--max-length", "32"];
    run(
      "index",
      "build",
      "--model",
      oldDir,
      "--corpus",
      join(dir, "corpus.jsonl"),
      "--out",
      join(dir, "index"),
      "--shard-size",
      "5",
      ...common,
    );

    // the missing compensator is named, with the command that fits it
    const missing = spawnSync(
      "node",
      [
        cli,
        "search",
        "--index",
        join(dir, "index"),
        "--model",
        newDir,
        "--queries",
        join(dir, "queries.jsonl"),
        "--output",
        join(dir, "run.trec"),
        ...common,
      ],
      { encoding: "utf8" },
    );
    assert.notEqual(missing.status, 0);
    assert.match(
      missing.stderr,
      /no mean compensator for [0-9a-f]{16} \(.*new\) → [0-9a-f]{16} \(.*bert-tiny\): fit one with `qdc drift fit/,
    );

    run(
      "drift",
      "fit",
      "--old",
      oldDir,
      "--new",
      newDir,
      "--queries",
      join(dir, "queries.jsonl"),
      "--method",
      "mean",
      "--out",
      join(newDir, "drift", "mean.safetensors"),
      ...common,
    );
    run(
      "search",
      "--index",
      join(dir, "index"),
      "--model",
      newDir,
      "--queries",
      join(dir, "queries.jsonl"),
      "--output",
      join(dir, "run.trec"),
      "-k",
      "3",
      ...common,
    );
    const lines = readFileSync(join(dir, "run.trec"), "utf8").trim().split("\n");
    assert.equal(lines.length, c.queries.length * 3);
    assert.match(lines[0]!, /^q0 Q0 doc\d+ 1 -?\d+\.\d{6} qdc$/);

    // reference: compensated new-model queries against old-model documents
    const oldModel = EmbeddingModel.load(oldDir);
    const newModel = EmbeddingModel.load(newDir);
    const comp = loadCompensator(join(newDir, "drift", "mean.safetensors")).compensator;
    const expected = tidy(() => {
      const docs = oldModel.encode(c.docs, { prefix: false, maxLength: 32 });
      const q = comp.apply(newModel.encode(c.queries, { prefix: false, maxLength: 32 }));
      const top = q.matmul(docs.T).sort(1, true, true).indices.narrow(1, 0, 3).toArray();
      return top.map((i) => `doc${i}`);
    });
    assert.deepEqual(
      lines.map((l) => l.split(" ")[2]),
      expected,
    );

    // --compensate none searches with the raw new queries
    run(
      "search",
      "--index",
      join(dir, "index"),
      "--model",
      newDir,
      "--queries",
      join(dir, "queries.jsonl"),
      "--output",
      join(dir, "none.trec"),
      "-k",
      "3",
      "--compensate",
      "none",
      ...common,
    );
    assert.equal(readFileSync(join(dir, "none.trec"), "utf8").trim().split("\n").length, 18);

    // a model outside the index's lineage is refused
    const unrelated = spawnSync(
      "node",
      [
        cli,
        "search",
        "--index",
        join(dir, "index"),
        "--model",
        join(FIXTURES, "nomic-tiny"),
        "--queries",
        join(dir, "queries.jsonl"),
        "--output",
        join(dir, "x.trec"),
        ...common,
      ],
      { encoding: "utf8" },
    );
    assert.notEqual(unrelated.status, 0);
    assert.match(unrelated.stderr, /is not in the lineage of .*nomic-tiny.*re-index with this model/);

    // re-embed one shard: a mixed-version index, each shard searched its own way
    const reembed = (...extra: string[]) =>
      run(
        "index",
        "reembed",
        "--index",
        join(dir, "index"),
        "--model",
        newDir,
        "--corpus",
        join(dir, "corpus.jsonl"),
        ...extra,
        ...common,
      );
    reembed("--max-shards", "1");
    const manifest = () =>
      JSON.parse(readFileSync(join(dir, "index", "manifest.json"), "utf8")) as { shards: { modelVersion: string }[] };
    // shards are tagged with the models' content ids (not their paths)
    const [newId, oldId] = [hashModel(newDir), hashModel(oldDir)];
    assert.deepEqual(
      manifest().shards.map((s) => s.modelVersion),
      [newId, oldId, oldId],
    );
    const search = (out: string) =>
      run(
        "search",
        "--index",
        join(dir, "index"),
        "--model",
        newDir,
        "--queries",
        join(dir, "queries.jsonl"),
        "--output",
        out,
        "-k",
        "12",
        ...common,
      );
    search(join(dir, "mixed.trec"));
    const mixed = readFileSync(join(dir, "mixed.trec"), "utf8").trim().split("\n");
    assert.equal(mixed.length, 6 * 12, "every document is found exactly once per query");
    for (let q = 0; q < 6; q++)
      assert.equal(new Set(mixed.slice(q * 12, q * 12 + 12).map((l) => l.split(" ")[2])).size, 12);
    // the rest, then plain new-model search: the same ranking as embedding everything anew
    reembed();
    assert.ok(manifest().shards.every((s) => s.modelVersion === newId));
    search(join(dir, "fresh.trec"));
    const fresh = tidy(() => {
      const docs = newModel.encode(c.docs, { prefix: false, maxLength: 32 });
      const q = newModel.encode(c.queries, { prefix: false, maxLength: 32 });
      return q
        .matmul(docs.T)
        .sort(1, true, true)
        .indices.toArray()
        .map((i) => `doc${i}`);
    });
    assert.deepEqual(
      readFileSync(join(dir, "fresh.trec"), "utf8")
        .trim()
        .split("\n")
        .map((l) => l.split(" ")[2]),
      fresh,
    );
  });
});
