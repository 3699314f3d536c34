import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";

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
});
