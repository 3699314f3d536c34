import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { readLines } from "../src/data/lines.js";
import { lineageOf } from "../src/lineage/index.js";
import { FIXTURES } from "./helpers.js";

const cli = new URL("../src/cli/main.js", import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
  version: string;
  bin: Record<string, string>;
};

describe("qdc command", () => {
  it("--version prints the package version", () => {
    assert.equal(execFileSync("node", [cli, "--version"], { encoding: "utf8" }).trim(), pkg.version);
    assert.equal(pkg.bin.qdc, "dist/src/cli/main.js");
  });
  it("--help lists the commands", () => {
    const out = execFileSync("node", [cli, "--help"], { encoding: "utf8" });
    assert.match(out, /Usage: qdc/);
    assert.match(out, /info/);
    assert.match(out, /bench/);
  });
  it("info reports the engine as JSON", () => {
    const info = JSON.parse(execFileSync("node", [cli, "info", "--json"], { encoding: "utf8" }));
    assert.match(info.torch, /^\d+\.\d+\.\d+$/);
    assert.ok(info.threads >= 1);
    const two = JSON.parse(
      execFileSync("node", [cli, "info", "--json"], { encoding: "utf8", env: { ...process.env, QDC_THREADS: "1" } }),
    );
    assert.equal(two.threads, 1);
  });
  it("unknown commands and bad settings fail with a message", () => {
    const r = spawnSync("node", [cli, "frobnicate"], { encoding: "utf8" });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /unknown command 'frobnicate'/);
    const t = spawnSync("node", [cli, "info"], { encoding: "utf8", env: { ...process.env, QDC_THREADS: "zero" } });
    assert.notEqual(t.status, 0);
    assert.match(t.stderr, /QDC_THREADS must be a positive integer/);
  });
  it("missing configs, model directories and corrupt lineage records are named", () => {
    const shipped = spawnSync("node", [cli, "bench", "run", "--config", "nope"], { encoding: "utf8" });
    assert.notEqual(shipped.status, 0);
    assert.match(
      shipped.stderr,
      /no shipped config 'nope' \(shipped: cdr, cpu, gpu, tiny\); or give the path of a YAML run file/,
    );
    const dir = mkdtempSync(join(tmpdir(), "qdc-cli-"));
    const file = spawnSync("node", [cli, "bench", "run", "--config", join(dir, "run.yaml")], { encoding: "utf8" });
    assert.match(
      file.stderr,
      new RegExp(`${join(dir, "run.yaml")}: no such config file \\(shipped configs: cdr, cpu, gpu, tiny\\)`),
    );
    writeFileSync(join(dir, "texts.txt"), "hello\n");
    const model = spawnSync(
      "node",
      [cli, "tokenize", "--model", join(dir, "nothing"), "--input", join(dir, "texts.txt")],
      {
        encoding: "utf8",
      },
    );
    assert.notEqual(model.status, 0);
    assert.match(model.stderr, new RegExp(`${join(dir, "nothing")}: no such model directory`));
    const child = join(dir, "child");
    mkdirSync(child);
    writeFileSync(join(child, "lineage.json"), '{"parent": ');
    assert.throws(
      () => lineageOf(child),
      (e: Error) =>
        e.message.startsWith(`${join(child, "lineage.json")}: not a readable lineage record (`) &&
        e.message.endsWith(`it holds the model's id and parent as {"id": ID, "parent": {"id": ID, "path": DIR}}`),
    );
  });
  it("input files that are missing, directories, not gzip or cut short are named, with what is wrong", async () => {
    const dir = mkdtempSync(join(tmpdir(), "qdc-inputs-"));
    const read = async (file: string) => {
      for await (const _ of readLines(file));
    };
    await assert.rejects(read(join(dir, "nope.txt")), { message: `${join(dir, "nope.txt")}: no such file` });
    await assert.rejects(read(join(dir, "nope.jsonl.gz")), { message: `${join(dir, "nope.jsonl.gz")}: no such file` });
    await assert.rejects(read(dir), { message: `${dir}: a directory, not a file` });
    writeFileSync(join(dir, "plain.jsonl.gz"), '{"text": "not gzipped"}\n');
    await assert.rejects(read(join(dir, "plain.jsonl.gz")), {
      message: `${join(dir, "plain.jsonl.gz")}: not a gzip file (incorrect header check); a plain text file must not end in .gz`,
    });
    const whole = gzipSync(Array.from({ length: 3000 }, (_, i) => `{"text": "line ${i} of some length"}`).join("\n"));
    writeFileSync(join(dir, "cut.jsonl.gz"), whole.subarray(0, Math.floor(whole.length / 2)));
    await assert.rejects(read(join(dir, "cut.jsonl.gz")), (e: Error) =>
      new RegExp(
        `^${join(dir, "cut.jsonl.gz")}: the gzip data ends early, after line \\d+ \\(a truncated file: unexpected end of file\\)$`,
      ).test(e.message),
    );
    // through the CLI: the same message, no stack
    const r = spawnSync(
      "node",
      [cli, "tokenize", "--model", join(FIXTURES, "bert-tiny"), "--input", join(dir, "plain.jsonl.gz")],
      { encoding: "utf8" },
    );
    assert.notEqual(r.status, 0);
    assert.equal(
      r.stderr.trim(),
      `qdc: ${join(dir, "plain.jsonl.gz")}: not a gzip file (incorrect header check); a plain text file must not end in .gz`,
    );
  });
});
