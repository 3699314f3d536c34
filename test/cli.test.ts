import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { lineageOf } from "../src/lineage/index.js";

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
});
