/** `qdc tokenize` / `qdc encode` and the resumable file encoder. */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { EmbeddingModel, loadSafetensors, tidy } from "../src/index.js";
import { encodeFile } from "../src/models/encode-file.js";
import { assertClose, FIXTURES } from "./helpers.js";

const cli = new URL("../src/cli/main.js", import.meta.url).pathname;
const tmp = () => mkdtempSync(join(tmpdir(), "qdc-cli-"));
const texts = ["tool to compress files", "a web server with reverse proxy", "", "image manipulation program", "json"];

describe("qdc tokenize", () => {
  it("prints token ids as JSON lines, from .txt and .jsonl.gz", () => {
    const dir = tmp();
    writeFileSync(join(dir, "in.txt"), `${texts.join("\n")}\n`);
    const out = execFileSync(
      "node",
      [cli, "tokenize", "--model", join(FIXTURES, "bert-tiny"), "--input", join(dir, "in.txt"), "--max-length", "4"],
      { encoding: "utf8" },
    );
    const rows = out
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as number[]);
    assert.equal(rows.length, texts.length);
    assert.deepEqual(rows[2], [2, 3]);
    assert.ok(rows.every((r) => r.length <= 4 && r[0] === 2 && r.at(-1) === 3));
    writeFileSync(join(dir, "in.jsonl.gz"), gzipSync(texts.map((text) => JSON.stringify({ text })).join("\n")));
    const gz = execFileSync(
      "node",
      [
        cli,
        "tokenize",
        "--model",
        join(FIXTURES, "bert-tiny"),
        "--input",
        join(dir, "in.jsonl.gz"),
        "--max-length",
        "4",
      ],
      { encoding: "utf8" },
    );
    assert.equal(gz, out);
  });
  it("reports malformed JSONL rows with file:line", () => {
    const dir = tmp();
    writeFileSync(join(dir, "bad.jsonl"), '{"text": "ok"}\n{"txt": "no"}\n');
    const r = spawnSync(
      "node",
      [cli, "tokenize", "--model", join(FIXTURES, "bert-tiny"), "--input", join(dir, "bad.jsonl")],
      { encoding: "utf8" },
    );
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /bad\.jsonl:2: expected a string field 'text', got null/);
    writeFileSync(join(dir, "bad2.jsonl"), "{oops\n");
    const r2 = spawnSync(
      "node",
      [cli, "tokenize", "--model", join(FIXTURES, "bert-tiny"), "--input", join(dir, "bad2.jsonl")],
      { encoding: "utf8" },
    );
    assert.match(r2.stderr, /bad2\.jsonl:1: not valid JSON/);
  });
});

describe("qdc encode", () => {
  it("writes embeddings in input order equal to the library's, with the query prompt", () => {
    const dir = tmp();
    writeFileSync(join(dir, "in.txt"), texts.join("\n"));
    const out = join(dir, "q.safetensors");
    execFileSync(
      "node",
      [
        cli,
        "encode",
        "--model",
        join(FIXTURES, "nomic-tiny"),
        "--kind",
        "query",
        "--input",
        join(dir, "in.txt"),
        "--output",
        out,
        "--batch-size",
        "2",
        "--chunk-size",
        "2",
      ],
      {
        stdio: "pipe",
      },
    );
    const emb = loadSafetensors(out).get("embeddings")!;
    assert.deepEqual([...emb.shape], [5, 64]);
    assert.equal(emb.dtype, "float32");
    const model = EmbeddingModel.load(join(FIXTURES, "nomic-tiny"));
    // chunks of 2 batch differently from one call (other padding), so agreement is to float32 rounding
    tidy(() => assertClose(emb.toArray(), model.encode(texts, { kind: "query", batchSize: 2 }).toArray(), 2e-6, 0));
    assert.equal(existsSync(`${out}.parts`), false);
    const log = readFileSync(`${out}.log.jsonl`, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    assert.deepEqual(
      log.map((e) => e.event),
      ["start", "chunk", "chunk", "chunk", "done"],
    );
    // --no-prefix and --prefix
    const np = join(dir, "np.safetensors");
    execFileSync(
      "node",
      [
        cli,
        "encode",
        "--model",
        join(FIXTURES, "nomic-tiny"),
        "--no-prefix",
        "--input",
        join(dir, "in.txt"),
        "--output",
        np,
      ],
      { stdio: "pipe" },
    );
    tidy(() =>
      assert.ok(
        loadSafetensors(np)
          .get("embeddings")!
          .equal(model.encode(texts, { prefix: false })),
      ),
    );
    const bad = spawnSync(
      "node",
      [cli, "encode", "--model", join(FIXTURES, "nomic-tiny"), "--input", join(dir, "missing.txt"), "--output", np],
      { encoding: "utf8" },
    );
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /missing\.txt/);
    const badBatch = spawnSync(
      "node",
      [cli, "encode", "--model", "x", "--input", "y", "--output", "z", "--batch-size", "0"],
      { encoding: "utf8" },
    );
    assert.match(badBatch.stderr, /--batch-size must be a positive integer/);
  });

  it("resumes after a crash from the finished chunks and gives the same file", async () => {
    const dir = tmp();
    const input = join(dir, "in.txt");
    writeFileSync(input, texts.join("\n"));
    const model = EmbeddingModel.load(join(FIXTURES, "bert-tiny"));
    const whole = join(dir, "whole.safetensors");
    await encodeFile(model, input, whole, { chunkSize: 2, batchSize: 1 });
    const out = join(dir, "out.safetensors");
    await assert.rejects(
      encodeFile(model, input, out, {
        chunkSize: 2,
        batchSize: 1,
        onProgress: (done) => {
          if (done > 3) throw new Error("simulated crash");
        },
      }),
      /simulated crash/,
    );
    assert.equal(existsSync(out), false, "no half-written output");
    const result = await encodeFile(model, input, out, { chunkSize: 2, batchSize: 1 });
    assert.equal(result.resumedChunks, 1);
    assert.deepEqual(readFileSync(out), readFileSync(whole));
  });
});
