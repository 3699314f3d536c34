/**
 * The README's path from a fine-tune to a search of the old index runs as written: its shell block
 * is read from README.md and each command run (with `qdc` as this checkout's CLI) in a temporary
 * folder holding the fixture model as `runs/demo/task1` and small data files under the names the
 * README uses.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { hashModel } from "../src/lineage/index.js";
import { FIXTURES, WORDS, wordCorpus } from "./helpers.js";

const cli = new URL("../src/cli/main.js", import.meta.url).pathname;
const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");

/** The commands of the first ```sh block after `marker`, continuation lines joined. */
function shellBlock(marker: string): string[][] {
  const at = readme.indexOf(marker);
  assert.ok(at >= 0, `README.md has no '${marker}'`);
  const start = readme.indexOf("```sh\n", at) + 6;
  const block = readme.slice(start, readme.indexOf("```", start));
  return block
    .replace(/\\\n\s*/g, " ")
    .split("\n")
    .filter((l) => l.trim() && !l.trim().startsWith("#"))
    .map((l) => l.trim().split(/\s+/));
}

describe("README examples", () => {
  it("train → drift fit → index build → search → eval → reembed runs as written", () => {
    const dir = mkdtempSync(join(tmpdir(), "qdc-readme-"));
    const task1 = join(dir, "runs", "demo", "task1");
    mkdirSync(task1, { recursive: true });
    for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"])
      copyFileSync(join(FIXTURES, "bert-tiny", f), join(task1, f));
    copyFileSync(join(FIXTURES, "train-step", "train.jsonl"), join(dir, "task2.jsonl"));
    writeFileSync(
      join(dir, "task2-queries.jsonl"),
      `${WORDS.map((w) => JSON.stringify({ text: `where is the ${w}` })).join("\n")}\n`,
    );
    wordCorpus(dir, 60);
    writeFileSync(
      join(dir, "queries.jsonl"),
      `${WORDS.map((w) => JSON.stringify({ _id: `q-${w}`, text: `about the ${w}` })).join("\n")}\n`,
    );
    const judged = WORDS.flatMap((w, j) =>
      Array.from({ length: 60 }, (_, i) => i)
        .filter((i) => i % 12 === j)
        .map((i) => `q-${w}\tdoc${i}\t1`),
    );
    writeFileSync(join(dir, "qrels.tsv"), `query-id\tcorpus-id\tscore\n${judged.join("\n")}\n`);

    const commands = shellBlock("a test runs this\nblock on the fixture models");
    assert.deepEqual(
      commands.map((c) => `${c[0]} ${c[1]}`),
      ["qdc train", "qdc drift", "qdc index", "qdc search", "qdc eval", "qdc index"],
    );
    const out: Record<string, string> = {};
    for (const c of commands) {
      assert.equal(c[0], "qdc");
      const r = spawnSync("node", [cli, ...c.slice(1)], { cwd: dir, encoding: "utf8" });
      assert.equal(r.status, 0, `${c.join(" ")}\n${r.stderr}`);
      out[c.slice(0, 3).join(" ")] = r.stdout + r.stderr;
    }
    // the flag-form train recorded the lineage the search compensates along
    const rec = JSON.parse(readFileSync(join(dir, "runs", "demo", "task2", "lineage.json"), "utf8"));
    assert.deepEqual(rec.parent, { id: hashModel(task1), path: "../task1" });
    assert.match(out["qdc search --index"] as string, /searched 12 queries \(compensation: mean\)/);
    assert.match(out["qdc eval --qrels"] as string, /^ndcg_cut_10\s+all\s+0\.\d{4}$/m);
    const run = readFileSync(join(dir, "run.trec"), "utf8").trim().split("\n");
    assert.equal(run.length, 12 * 60, "every document ranked for every query (k 100 over 60 documents)");
    const manifest = JSON.parse(readFileSync(join(dir, "indexes", "task1", "manifest.json"), "utf8")) as {
      shards: { modelVersion: string }[];
    };
    assert.equal(manifest.shards[0]?.modelVersion, hashModel(join(dir, "runs", "demo", "task2")));
  });
});
