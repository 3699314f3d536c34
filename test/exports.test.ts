/** The library surface: the package root and its subpaths, as a user imports them by name. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";

describe("package exports", () => {
  it("each subpath gives its module's API", async () => {
    const want: Record<string, string[]> = {
      qdc: ["EmbeddingModel", "tensor", "fitCompensator", "invert", "loadCompensator"],
      "qdc/lineage": ["modelId", "lineageOf", "compensationChain", "findModel", "migrateRecords"],
      "qdc/train": ["train", "runContinual", "readRunConfig", "infoNCE", "cosineDistillation"],
      "qdc/index": ["ExactIndex"],
      "qdc/retrieval": ["QueryRouter", "mergeHits", "searchVersions", "embedRows"],
      "qdc/store": ["LanceStore", "PgVectorStore", "openStore", "checkFilter"],
      "qdc/server": ["SearchService", "Reindexer", "buildApp", "loadCorpus", "checkCorpus", "checkUpgrade"],
      "qdc/eval": ["evaluate", "parseMeasures", "readRun", "writeRun", "runBenchmark", "readBenchmarkConfig"],
    };
    for (const [path, names] of Object.entries(want)) {
      const m = (await import(path)) as Record<string, unknown>;
      for (const n of names) assert.equal(typeof m[n], "function", `${path} exports ${n}`);
    }
    // the lists are values, not functions
    const { COMPENSATORS } = (await import("qdc/lineage")) as { COMPENSATORS: readonly string[] };
    assert.deepEqual([...COMPENSATORS], ["mean", "kernel", "procrustes", "affine", "mlp", "local"]);
  });
});
