/**
 * `qdc store load` cannot half-succeed unnoticed: the corpus is checked whole before anything is
 * written (duplicate ids with both lines, field types with file:line, declared fields no row has),
 * a load killed midway is recorded as unfinished, the service refuses such a store unless told,
 * and a rerun goes on after the rows already written.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { appendFileSync, existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { hashModel } from "../src/lineage/index.js";
import { checkCorpus } from "../src/server/load.js";
import { SearchService } from "../src/server/service.js";
import { LanceStore } from "../src/store/lancedb.js";
import { FIXTURES, WORDS } from "./helpers.js";

const cli = new URL("../src/cli/main.js", import.meta.url).pathname;
const model = join(FIXTURES, "bert-tiny");
const tmp = () => mkdtempSync(join(tmpdir(), "qdc-load-"));
const jsonl = (file: string, rows: Record<string, unknown>[]) =>
  writeFileSync(file, `${rows.map((r) => JSON.stringify(r)).join("\n")}\n`);

describe("store load", () => {
  it("checks the whole corpus first: duplicate ids with both lines, field types and absent fields, nothing created", async () => {
    const dir = tmp();
    const schema = { dim: 64, fields: { year: "number" as const, lang: "string" as const } };
    const file = join(dir, "c.jsonl");
    jsonl(file, [
      { _id: "a", text: "one", year: 1999, lang: "en" },
      { _id: "b", text: "two", year: 2001 },
      { _id: "c", text: "three", lang: "de" },
      { _id: "b", text: "four" },
    ]);
    await assert.rejects(checkCorpus(file, schema), { message: `${file}:4: duplicate _id 'b' (first at line 2)` });
    jsonl(file, [
      { _id: "a", text: "one", year: 1999 },
      { _id: "b", text: "two", year: "2001" },
    ]);
    await assert.rejects(checkCorpus(file, schema), {
      message: `${file}:2: field 'year' must be a number, got "2001"`,
    });
    jsonl(file, [
      { _id: "a", text: "one", year: 1999 },
      { _id: "b", text: "two", yr: 2001 },
    ]);
    await assert.rejects(checkCorpus(file, schema), {
      message: `${file}: no row has the declared field 'lang' (--fields): check the name`,
    });
    jsonl(file, [
      { _id: "a", text: "one", year: 1999, lang: "en" },
      { _id: "b", text: "two", year: null },
    ]);
    assert.equal(await checkCorpus(file, schema), 2);
    // through the CLI: refused before the store exists
    jsonl(file, [
      { _id: "a", text: "one" },
      { _id: "a", text: "again" },
    ]);
    const store = join(dir, "store");
    const r = spawnSync("node", [cli, "store", "load", "--store", store, "--model", model, "--corpus", file], {
      encoding: "utf8",
    });
    assert.notEqual(r.status, 0);
    assert.equal(r.stderr.trim(), `qdc: ${file}:2: duplicate _id 'a' (first at line 1)`);
    assert.equal(existsSync(store), false, "nothing is created for a corpus that cannot load");
  });

  it("a load killed midway is recorded unfinished, refused by the service, and a rerun goes on after it", async () => {
    const dir = tmp();
    const file = join(dir, "c.jsonl");
    const N = 700;
    jsonl(
      file,
      Array.from({ length: N }, (_, i) => ({ _id: `doc${i}`, text: `notes ${i} on the ${WORDS[i % 12]}` })),
    );
    const storeDir = join(dir, "store");
    const args = [cli, "store", "load", "--store", storeDir, "--model", model, "--corpus", file];
    const killed = spawnSync("node", args, {
      encoding: "utf8",
      env: { ...process.env, QDC_TEST_CRASH_AFTER_WRITES: "1" },
    });
    assert.equal(killed.signal, "SIGKILL");
    const mid = await LanceStore.open(storeDir);
    const state = await mid.readState();
    assert.equal(state?.load?.done, 256);
    assert.equal(state?.load?.rows, N);
    assert.equal(state?.load?.complete, false);
    assert.equal(await mid.count(), 256);
    // the service will not serve it as if it were whole
    await assert.rejects(
      SearchService.create({ store: mid, encoder: "inline" }),
      new RegExp(`stopped after 256 of ${N} rows .*rerun that \`qdc store load\` to finish it .*--allow-incomplete`),
    );
    const partial = await SearchService.create({ store: mid, encoder: "inline", allowIncomplete: true, log: () => {} });
    assert.equal(partial.model.version, hashModel(model), "the loading model is recorded as the one to serve");
    await partial.close();
    // the same command again: it goes on after the 256 rows
    const again = spawnSync("node", args, { encoding: "utf8" });
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stderr, /an earlier load of this corpus wrote 256 rows; going on after them/);
    const done = await LanceStore.open(storeDir);
    assert.equal(await done.count(), N);
    assert.deepEqual(await done.versions(), { [hashModel(model)]: N });
    assert.equal((await done.readState())?.load?.complete, true);
    const service = await SearchService.create({ store: done, encoder: "inline", log: () => {} });
    assert.equal((await service.search(["notes on the river"], 3)).results[0]?.length, 3);
    await service.close();
    // a changed corpus is loaded from its start (no resume of another file's progress)
    appendFileSync(file, `${JSON.stringify({ _id: "extra", text: "one more" })}\n`);
    const changed = spawnSync("node", args, { encoding: "utf8" });
    assert.equal(changed.status, 0, changed.stderr);
    assert.doesNotMatch(changed.stderr, /going on after/);
  });
});
