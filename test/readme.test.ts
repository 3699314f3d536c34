/**
 * The README's path from a fine-tune to a search of the old index runs as written: its shell block
 * is read from README.md and each command run (with `qdc` as this checkout's CLI) in a temporary
 * folder holding the fixture model as `runs/demo/task1` and small data files under the names the
 * README uses.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { hashModel } from "../src/lineage/index.js";
import { FIXTURES, WORDS, wordCorpus } from "./helpers.js";

const cli = new URL("../src/cli/main.js", import.meta.url).pathname;
const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");

/** The text of the first ```sh block after `marker`. */
function blockText(marker: string): string {
  const at = readme.indexOf(marker);
  assert.ok(at >= 0, `README.md has no '${marker}'`);
  const start = readme.indexOf("```sh\n", at) + 6;
  return readme.slice(start, readme.indexOf("```", start));
}

/** The commands of the first ```sh block after `marker`, continuation lines joined. */
function shellBlock(marker: string): string[][] {
  return blockText(marker)
    .replace(/\\\n\s*/g, " ")
    .split("\n")
    .filter((l) => l.trim() && !l.trim().startsWith("#"))
    .map((l) => l.trim().split(/\s+/));
}

/** A folder with the fixture model as `runs/demo/task1`, `qdc` on PATH as this checkout's CLI. */
function demoFolder(): { dir: string; task1: string; env: NodeJS.ProcessEnv } {
  const dir = mkdtempSync(join(tmpdir(), "qdc-readme-"));
  const task1 = join(dir, "runs", "demo", "task1");
  mkdirSync(task1, { recursive: true });
  for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"])
    copyFileSync(join(FIXTURES, "bert-tiny", f), join(task1, f));
  const bin = join(dir, ".bin");
  mkdirSync(bin);
  writeFileSync(join(bin, "qdc"), `#!/bin/sh\nexec "${process.execPath}" "${cli}" "$@"\n`);
  chmodSync(join(bin, "qdc"), 0o755);
  return { dir, task1, env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } };
}

/** The JSON objects printed one after another (curl -s ends none with a newline), in order. */
function jsonValues(text: string): Record<string, unknown>[] {
  const values: Record<string, unknown>[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"' && depth > 0) inString = true;
    else if (c === "{" && depth++ === 0) start = i;
    else if (c === "}" && depth > 0 && --depth === 0) values.push(JSON.parse(text.slice(start, i + 1)));
  }
  return values;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const { port } = server.address() as { port: number };
  await new Promise((ok) => server.close(ok));
  return port;
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

  it("the service session (load → serve → search → upgrade → re-index → rollback → check → restart → store reindex) runs as a script", {
    skip: spawnSync("curl", ["--version"]).status === 0 ? false : "no curl on this machine",
  }, async () => {
    const { dir, task1, env } = demoFolder();
    const rows = Array.from({ length: 80 }, (_, i) =>
      JSON.stringify({
        _id: `doc${i}`,
        text: `notes ${i} on the ${WORDS[i % 12]} and how to compress a file`,
        lang: i % 3 === 0 ? "de" : "en",
        year: 1990 + (i % 30),
      }),
    );
    writeFileSync(join(dir, "corpus.jsonl"), `${rows.join("\n")}\n`);
    writeFileSync(
      join(dir, "task2-queries.jsonl"),
      `${WORDS.map((w) => JSON.stringify({ text: `where is the ${w}` })).join("\n")}\n`,
    );
    copyFileSync(join(FIXTURES, "train-step", "train.jsonl"), join(dir, "task2.jsonl"));
    // task2 and its map to task1, as the block above makes them
    for (const c of [
      ["train", "--data", "task2.jsonl", "--init", task1, "--out", "runs/demo/task2", "--steps", "5"],
      [
        "drift",
        "fit",
        "--old",
        task1,
        "--new",
        "runs/demo/task2",
        "--queries",
        "task2-queries.jsonl",
        "--method",
        "mean",
      ],
    ]) {
      const r = spawnSync("qdc", c, { cwd: dir, env, encoding: "utf8" });
      assert.equal(r.status, 0, `qdc ${c.join(" ")}\n${r.stderr}`);
    }
    // the script exactly as written, on a free port instead of 8080; it stops at the first failure
    const port = await freePort();
    const script = blockText("a test runs this block with\nbash on the fixture models").replaceAll(
      "8080",
      String(port),
    );
    assert.match(script, /qdc serve .*&/);
    const r = spawnSync("bash", ["-e", "-c", script], { cwd: dir, env, encoding: "utf8", timeout: 240_000 });
    assert.equal(r.status, 0, `the README's service block failed:\n${r.stdout}\n${r.stderr}`);
    const out = r.stdout;
    // /health, the search (en rows only), upgrade, re-index start/status, rollback, /models after the restart
    const objects = jsonValues(out);
    const search = objects.find((o) => "results" in o) as { results: { id: string; fields: { lang: string } }[][] };
    const hits = search.results[0] ?? [];
    assert.equal(hits.length, 10);
    for (const h of hits) assert.equal(h.fields.lang, "en", `hit ${h.id} passed the filter`);
    const task1Id = hashModel(task1);
    const task2Id = hashModel(join(dir, "runs", "demo", "task2"));
    assert.ok(
      objects.some((o) => o.previous === task1Id && o.current === task2Id),
      "the upgrade answered",
    );
    assert.ok(
      objects.some((o) => o.state === "running" && o.target === task2Id),
      "the re-index started",
    );
    assert.ok(
      objects.some((o) => o.previous === task2Id && o.current === task1Id),
      "the rollback answered",
    );
    const models = objects.at(-1) as { current: string; store: { versions: Record<string, number> } };
    assert.equal(models.current, task1Id, "the restart serves the model recorded in the store");
    assert.equal(
      Object.values(models.store.versions).reduce((a, b) => a + b, 0),
      80,
    );
    assert.doesNotMatch(out, /"error"/, "no route answered an error");
    const check = JSON.parse(readFileSync(join(dir, "check.json"), "utf8")) as Record<string, unknown>;
    assert.ok(JSON.stringify(check).includes(task2Id), "upgrade check names the candidate");
    assert.match(
      r.stderr,
      /reindex done: 80 done, 0 left/,
      `store reindex re-embedded every row with task2:\n${r.stderr}`,
    );
  });
});
