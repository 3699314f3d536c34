/**
 * Model versions by content: ids computed from the files that decide a model's embeddings, lineage
 * records naming parents by id and relative path, models found by id under model roots, and a run
 * folder with its store moved to "another machine" (another root) where serving, searching,
 * upgrading and re-indexing go on. Stores and records of earlier releases (path versions) keep
 * working and are rewritten by `qdc migrate`.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fitBetweenModels } from "../src/drift/between-models.js";
import { invert, loadCompensator, normalize, randn, type Tensor, tidy } from "../src/index.js";
import {
  compensationChain,
  findModel,
  hashModel,
  lineageOf,
  modelId,
  modelRoots,
  readLineage,
  writeLineage,
} from "../src/lineage/index.js";
import { buildApp } from "../src/server/http.js";
import { loadCorpus } from "../src/server/load.js";
import { Reindexer } from "../src/server/reindex.js";
import { SearchService } from "../src/server/service.js";
import { LanceStore } from "../src/store/lancedb.js";
import { assertClose, derivedModel, FIXTURES, WORDS, wordCorpus } from "./helpers.js";

const cli = new URL("../src/cli/main.js", import.meta.url).pathname;
const tmp = () => mkdtempSync(join(tmpdir(), "qdc-lineage-"));

/** A copy of the bert-tiny fixture's model files (not its test tensors) in `dir`. */
function baseModel(dir: string): string {
  mkdirSync(dir, { recursive: true });
  for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"])
    cpSync(join(FIXTURES, "bert-tiny", f), join(dir, f));
  return dir;
}

describe("model ids", () => {
  it("are the SHA-256 of the model's files, whatever its path; a changed weight changes it", () => {
    const dir = tmp();
    const a = baseModel(join(dir, "a"));
    // by hand: name, NUL, size, NUL, bytes of each identity file in order (settings, then weights)
    const h = createHash("sha256");
    for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"]) {
      const bytes = readFileSync(join(a, f));
      h.update(`${f}\0${bytes.length}\0`).update(bytes);
    }
    const want = h.digest("hex").slice(0, 16);
    assert.equal(hashModel(a), want);
    assert.equal(modelId(a), want);
    // the fixture folder's extra files (test tensors) are not part of the model
    assert.equal(hashModel(join(FIXTURES, "bert-tiny")), want);
    cpSync(a, join(dir, "elsewhere", "b"), { recursive: true });
    assert.equal(modelId(join(dir, "elsewhere", "b")), want, "the same files under another path");
    // a record's cached id is used only while the files it was computed from are unchanged
    writeLineage(a, null);
    assert.equal(readLineage(a)?.id, want);
    const w = readFileSync(join(a, "model.safetensors"));
    w.writeUInt8(w.readUInt8(w.length - 1) ^ 1, w.length - 1);
    writeFileSync(join(a, "model.safetensors"), w);
    assert.notEqual(modelId(a), want);
    assert.equal(modelId(a), hashModel(a));
  });

  it("are found under model roots; an unknown id is not", () => {
    const dir = tmp();
    const a = baseModel(join(dir, "models", "deep", "er", "a"));
    const child = derivedModel(a, join(dir, "models"), "child", { seed: 4 });
    assert.equal(findModel(modelId(child), [join(dir, "models")]), child);
    assert.equal(findModel(modelId(a), [join(dir, "nothing"), join(dir, "models")]), a);
    assert.equal(findModel("0123456789abcdef", [join(dir, "models")]), null);
    process.env.QDC_MODELS = `${join(dir, "x")}:${join(dir, "models")}`;
    try {
      assert.deepEqual(modelRoots(["r"]), [join(process.cwd(), "r"), join(dir, "x"), join(dir, "models")]);
    } finally {
      delete process.env.QDC_MODELS;
    }
  });
});

describe("compensation along the lineage tree", () => {
  it("goes up to the shared ancestor, then down through the maps back (inverse or reverse fit)", () => {
    const dir = tmp();
    const base = baseModel(join(dir, "base"));
    const child = derivedModel(base, dir, "child", { seed: 7 });
    const sibling = derivedModel(base, dir, "sibling", { seed: 8 });
    // a kernel map has no inverse: the fit writes its reverse beside it
    const fit = fitBetweenModels({
      oldDir: base,
      newDir: child,
      queries: WORDS.map((w) => `the ${w}`),
      methods: ["kernel"],
    });
    assert.deepEqual(Object.keys(fit.written).sort(), ["kernel", "kernel.reverse"]);
    const q = tidy(() => normalize(randn([3, 64], { seed: 9 })));
    const close = (a: Tensor, b: Tensor, what: string) => assertClose(a.toArray(), b.toArray(), 1e-5, 1e-6, what);
    // parent → child (a rollback's queries to the rows the child re-indexed)
    const down = compensationChain(base, modelId(child), "kernel", [dir])(q);
    const reverse = loadCompensator(join(child, "drift", "kernel.reverse.safetensors")).compensator;
    close(down, reverse.apply(q), "base → child: the reverse kernel fit");
    const meanDown = compensationChain(base, modelId(child), "mean", [dir])(q);
    const childMean = loadCompensator(join(child, "drift", "mean.safetensors")).compensator;
    close(meanDown, invert(childMean)!.apply(q), "base → child: the inverse mean map");
    // sibling → child: up to base through the sibling's map, down through the child's map back
    const across = compensationChain(sibling, modelId(child), "mean", [dir])(q);
    const siblingMean = loadCompensator(join(sibling, "drift", "mean.safetensors")).compensator;
    close(across, invert(childMean)!.apply(siblingMean.apply(q)), "sibling → base → child");
    // without a root to find the child in, its rows are out of the sibling's reach (and it says so)
    assert.throws(
      () => compensationChain(sibling, modelId(child), "mean", [join(dir, "nothing")]),
      /is not in the lineage of .*its directory is not under the model roots/,
    );
  });
});

describe("any-to-any: a model of another size over a store it did not build", () => {
  it("serves through a fitted map into the store's space (drift fit --old A --new B), refuses to re-index there", async () => {
    const dir = tmp();
    const a = baseModel(join(dir, "a"));
    // an unrelated model, 96-d, one layer, its own random weights (the same tokenizer)
    const b = join(dir, "b");
    const { EmbeddingModel, bertConfig, Tokenizer } = await import("../src/index.js");
    const created = EmbeddingModel.create(
      bertConfig({
        vocabSize: 4096,
        hiddenSize: 96,
        numLayers: 1,
        numHeads: 2,
        intermediateSize: 128,
        maxPositions: 64,
      }),
      Tokenizer.fromDir(a),
      { seed: 11 },
    );
    created.save(b);
    created.dispose();
    const storeDir = join(dir, "store");
    const store = await LanceStore.open(storeDir, { dim: 64, fields: {} });
    await loadCorpus(store, a, wordCorpus(dir, 40, { stride: 7, offset: 2 }));
    await store.close();
    // without a map, the upgrade is refused with the command that fits one
    await assert.rejects(
      SearchService.create({
        store: await LanceStore.open(storeDir),
        modelDir: b,
        modelRoots: [dir],
        encoder: "inline",
        compensate: "affine",
      }),
      /no path of affine compensators leads there: .*`qdc drift fit --old .*\/a --new .*\/b --queries … --method affine`/,
    );
    const queries = join(dir, "fit.txt");
    writeFileSync(
      queries,
      `${Array.from({ length: 300 }, (_, i) => `about the ${WORDS[i % 12]} and ${WORDS[(i * 7) % 12]} ${i}`).join("\n")}\n`,
    );
    const fit = spawnSync(
      "node",
      [cli, "drift", "fit", "--old", a, "--new", b, "--queries", queries, "--method", "affine"],
      {
        encoding: "utf8",
      },
    );
    assert.equal(fit.status, 0, fit.stderr);
    const edge = join(b, "drift", `to-${modelId(a)}`, "affine.safetensors");
    assert.match(fit.stderr, new RegExp(`→ ${edge.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`));
    // the same over an exact index (qdc search): the map is found, the other methods named
    const corpusFile = wordCorpus(dir, 40, { stride: 7, offset: 2 });
    const idx = join(dir, "idx");
    const built = spawnSync("node", [cli, "index", "build", "--model", a, "--corpus", corpusFile, "--out", idx], {
      encoding: "utf8",
    });
    assert.equal(built.status, 0, built.stderr);
    const search = (mode: string) =>
      spawnSync(
        "node",
        [
          cli,
          "search",
          "--index",
          idx,
          "--model",
          b,
          "--compensate",
          mode,
          "--queries",
          queries,
          "-k",
          "3",
          "--output",
          join(dir, `${mode}.trec`),
        ],
        { encoding: "utf8" },
      );
    const mapped = search("affine");
    assert.equal(mapped.status, 0, mapped.stderr);
    assert.match(mapped.stderr, /searched 300 queries \(compensation: affine\)/);
    const unmapped = search("mean");
    assert.notEqual(unmapped.status, 0);
    assert.match(unmapped.stderr, /maps into its space are fitted with affine: search with --compensate affine/);
    assert.match(
      unmapped.stderr,
      /`qdc drift fit --old .*\/a --new .*\/b --queries … --method affine`, then search with --compensate affine\)/,
    );
    const service = await SearchService.create({
      store: await LanceStore.open(storeDir),
      modelDir: b,
      encoder: "inline",
      compensate: "affine",
      log: () => {},
    });
    try {
      const r = await service.search(["the river and the garden"], 5);
      assert.deepEqual(r.versions, { [modelId(a)]: { rows: 40, compensation: "affine" } });
      // the same as the map applied by hand and an exact search of the stored vectors
      const m = EmbeddingModel.load(b);
      const q = loadCompensator(edge).compensator.apply(m.encode(["the river and the garden"], { kind: "query" }));
      const rows = await service.store.get(Array.from({ length: 40 }, (_, i) => `doc${i}`));
      const qv = q.toArray();
      const want = rows
        .map((row) => ({ id: row.id, s: Array.from(row.vector).reduce((acc, x, i) => acc + x * (qv[i] as number), 0) }))
        .sort((x, y) => y.s - x.s)
        .slice(0, 5)
        .map((x) => x.id);
      assert.deepEqual(
        r.results[0]?.map((h) => h.id),
        want,
      );
      m.dispose();
      // its own 96-d vectors cannot go into a 64-d store
      const reindexer = new Reindexer(service);
      const st = reindexer.start();
      assert.equal(st.state, "failed");
      assert.match(
        String(st.error),
        /embeds 96-d vectors and the store holds 64-d ones: .*re-indexes into a new store/,
      );
      // over HTTP the start is refused (409), not answered as a re-index that has begun
      const app = buildApp(service, reindexer, { token: "t0ken" });
      const res = await app.inject({
        method: "POST",
        url: "/admin/reindex",
        headers: { authorization: "Bearer t0ken", "content-type": "application/json" },
        payload: { action: "start" },
      });
      assert.equal(res.statusCode, 409);
      assert.equal(res.json().error, "reindex_refused");
      assert.match(res.json().message, /embeds 96-d vectors and the store holds 64-d ones/);
      await app.close();
    } finally {
      await service.close();
    }
  });
});

describe("a run folder moved to another machine", () => {
  it("serves, searches, upgrades by id and re-indexes from its new place", async () => {
    const dir = tmp();
    const a = join(dir, "machine-a");
    const base = baseModel(join(a, "models", "base"));
    const t1 = derivedModel(base, join(a, "runs"), "t1", { seed: 2 });
    const t2 = derivedModel(t1, join(a, "runs"), "t2", { seed: 3 });
    assert.deepEqual(readLineage(t2)?.parent, { id: modelId(t1), path: "../t1" });
    assert.deepEqual(readLineage(t1)?.parent, { id: modelId(base), path: "../../models/base" });
    const ids = [t2, t1, base].map(modelId);
    const N = 30;
    const storeDir = join(a, "store");
    const store = await LanceStore.open(storeDir, { dim: 64, fields: {} });
    await loadCorpus(store, t1, wordCorpus(dir, N));
    const first = await SearchService.create({ store, modelDir: t1, encoder: "inline", log: () => {} });
    await first.close();

    // the whole folder under another root: every recorded path is gone
    const b = join(dir, "machine-b", "srv", "qdc");
    mkdirSync(join(dir, "machine-b", "srv"), { recursive: true });
    renameSync(a, b);
    const moved = await LanceStore.open(join(b, "store"));
    assert.deepEqual(await moved.versions(), { [ids[1] as string]: N });
    const roots = [b];
    // no model given: the recorded id is found under the root (its recorded directory is gone)
    const service = await SearchService.create({ store: moved, modelRoots: roots, encoder: "inline", log: () => {} });
    assert.equal(service.model.version, ids[1]);
    assert.equal(service.model.dir, join(b, "runs", "t1"));
    const before = await service.search(["the river"], 5);
    assert.equal(before.results[0]?.length, 5);
    // an upgrade by id, along the lineage found in the new place
    const up = await service.upgrade(ids[0] as string);
    assert.deepEqual(up, { previous: ids[1], current: ids[0] });
    assert.deepEqual(
      lineageOf(join(b, "runs", "t2"), roots).map((e) => e.id),
      ids,
    );
    const during = await service.search(["the river"], 5);
    assert.equal(during.versions[ids[1] as string]?.compensation, "mean");
    const reindexer = new Reindexer(service, { batchSize: 8, writeRows: 8 });
    reindexer.start();
    const st = await reindexer.settled();
    assert.equal(st.state, "done", st.error);
    assert.deepEqual(await service.versions(), { [ids[0] as string]: N });
    await service.close();
    // and a restart there, no model given, resumes the newer model
    const again = await SearchService.create({
      store: await LanceStore.open(join(b, "store")),
      modelRoots: roots,
      encoder: "inline",
      log: () => {},
    });
    assert.equal(again.model.version, ids[0]);
    await again.close();
  });

  it("serves the child alone against its parent's rows: the compensator beside the child is enough", async () => {
    const dir = tmp();
    const base = baseModel(join(dir, "a", "base"));
    const child = derivedModel(base, join(dir, "a"), "child", { seed: 5 });
    const store = await LanceStore.open(join(dir, "a", "store"), { dim: 64, fields: {} });
    await loadCorpus(store, base, wordCorpus(dir, 20, { stride: 7, offset: 2 }));
    await store.close();
    // only the child and the store travel; the parent stays behind (removed here)
    mkdirSync(join(dir, "b"));
    renameSync(child, join(dir, "b", "child"));
    renameSync(join(dir, "a", "store"), join(dir, "b", "store"));
    const baseId = modelId(base);
    rmSync(join(dir, "a"), { recursive: true });
    const chain = lineageOf(join(dir, "b", "child"), []);
    assert.deepEqual(chain[1], { id: baseId, dir: null });
    const service = await SearchService.create({
      store: await LanceStore.open(join(dir, "b", "store")),
      modelDir: join(dir, "b", "child"),
      modelRoots: [],
      encoder: "inline",
      log: () => {},
    });
    const r = await service.search(["the garden"], 4);
    assert.equal(r.versions[baseId]?.compensation, "mean");
    assert.equal(r.results[0]?.length, 4);
    await service.close();
  });

  it("names the id and where it looked when a recorded model cannot be found", async () => {
    const dir = tmp();
    const base = baseModel(join(dir, "base"));
    const store = await LanceStore.open(join(dir, "store"), { dim: 64, fields: {} });
    await loadCorpus(store, base, wordCorpus(dir, 10, { stride: 7, offset: 2 }));
    await (await SearchService.create({ store, modelDir: base, encoder: "inline", log: () => {} })).close();
    const id = modelId(base);
    rmSync(base, { recursive: true });
    await assert.rejects(
      SearchService.create({ store: await LanceStore.open(join(dir, "store")), modelRoots: [dir], encoder: "inline" }),
      new RegExp(
        `^Error: model ${id} not found \\(it was at ${base}\\) under ${dir}: pass --models ROOT \\(or set QDC_MODELS\\)`,
      ),
    );
  });
});

describe("path versions of earlier releases", () => {
  it("keep working, and `qdc migrate` rewrites records and stores to ids", async () => {
    const dir = tmp();
    const a = join(dir, "old-layout");
    const base = baseModel(join(a, "base"));
    const child = derivedModel(base, a, "child", { seed: 6 });
    // as earlier releases wrote them: the parent's absolute path, rows tagged with model paths
    writeFileSync(join(child, "lineage.json"), JSON.stringify({ parent: base, task: "t", run: "r" }));
    const storeDir = join(a, "store");
    const store = await LanceStore.open(storeDir, { dim: 64, fields: {} });
    const other = await LanceStore.open(join(dir, "scratch"), { dim: 64, fields: {} });
    await loadCorpus(other, base, wordCorpus(dir, 12, { stride: 7, offset: 2 }));
    const rows = await other.get(Array.from({ length: 12 }, (_, i) => `doc${i}`));
    await other.close();
    await store.upsert(rows.map((r) => ({ ...r, version: base })));
    // read as before: the child reaches the path-tagged rows of its parent
    const legacy = await SearchService.create({ store, modelDir: child, encoder: "inline", log: () => {} });
    const r = await legacy.search(["the ocean"], 3);
    assert.equal(r.versions[base]?.compensation, "mean");
    assert.equal(r.results[0]?.length, 3);
    await legacy.close();
    const reopened = await LanceStore.open(storeDir);
    await reopened.writeState({ model: base, compensation: "mean" });
    await reopened.close();

    const run = spawnSync("node", [cli, "migrate", "--models", a, "--store", storeDir], { encoding: "utf8" });
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stderr, /1 lineage record\(s\) rewritten/);
    assert.match(run.stderr, /1 version\(s\) retagged, state rewritten/);
    assert.deepEqual(readLineage(child)?.parent, { id: modelId(base), path: "../base" });
    assert.equal(readLineage(child)?.task, "t", "the record's other fields are kept");
    const migrated = await LanceStore.open(storeDir);
    assert.deepEqual(await migrated.versions(), { [modelId(base)]: 12 });
    assert.equal((await migrated.readState())?.model, modelId(base));
    await migrated.close();
    // and now the folder can move
    const baseId = modelId(base);
    renameSync(a, join(dir, "moved"));
    const s = await SearchService.create({
      store: await LanceStore.open(join(dir, "moved", "store")),
      modelDir: join(dir, "moved", "child"),
      encoder: "inline",
      log: () => {},
    });
    assert.equal((await s.search(["the ocean"], 3)).versions[baseId]?.compensation, "mean");
    await s.close();
    // a second run finds nothing left to do
    const again = spawnSync("node", [cli, "migrate", "--models", join(dir, "moved")], { encoding: "utf8" });
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stderr, /0 lineage record\(s\) rewritten, 1 already current/);
  });
});
