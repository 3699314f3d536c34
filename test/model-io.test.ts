/** Tokenizer fixtures, model save/load round trips, random init, encode ordering and bad inputs. */
import assert from "node:assert/strict";
import { copyFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  bertConfig,
  EmbeddingModel,
  loadSafetensors,
  parseConfig,
  saveSafetensors,
  type Tensor,
  Tokenizer,
  tidy,
} from "../src/index.js";
import { assertClose, FIXTURES } from "./helpers.js";

const tmp = () => mkdtempSync(join(tmpdir(), "qdc-model-"));
const cases = JSON.parse(readFileSync(join(FIXTURES, "tokenizer/cases.json"), "utf8")) as {
  max_length: number;
  cases: { text: string; input_ids: number[]; tokens: string[] }[];
};

describe("tokenizer", () => {
  it("matches the fixture cases through tokenizer.json", () => {
    const tok = Tokenizer.fromDir(join(FIXTURES, "tokenizer"));
    for (const c of cases.cases) {
      const ids = tok.encode(c.text, cases.max_length);
      assert.deepEqual(ids, c.input_ids, JSON.stringify(c.text));
      assert.deepEqual(
        ids.map((i) => tok.idToToken(i)),
        c.tokens,
      );
    }
  });
  it("matches the fixture cases through vocab.txt alone", () => {
    const dir = tmp();
    copyFileSync(join(FIXTURES, "tokenizer/vocab.txt"), join(dir, "vocab.txt"));
    const tok = Tokenizer.fromDir(dir);
    for (const c of cases.cases)
      assert.deepEqual(tok.encode(c.text, cases.max_length), c.input_ids, JSON.stringify(c.text));
  });
  it("truncates keeping the special tokens, and without a limit keeps everything", () => {
    const tok = Tokenizer.fromDir(join(FIXTURES, "tokenizer"));
    const long = "a ".repeat(100);
    assert.equal(tok.encode(long, 8).length, 8);
    assert.equal(tok.encode(long, 8).at(-1), tok.tokenToId("[SEP]"));
    assert.equal(tok.encode(long).length, 102);
    assert.deepEqual(tok.encode("", 2), [2, 3]);
    assert.throws(() => Tokenizer.fromDir(tmp()), /no tokenizer\.json or vocab\.txt/);
  });
});

describe("model directories", () => {
  it("save → load gives identical outputs, Hugging Face names and sentence-transformers files", () => {
    for (const name of ["bert-tiny", "nomic-tiny"]) {
      const model = EmbeddingModel.load(join(FIXTURES, name));
      const dir = tmp();
      model.save(dir);
      const again = EmbeddingModel.load(dir);
      const texts = ["tool to compress files", "a web server", "x"];
      tidy(() => {
        const a = model.encode(texts, { kind: "query" });
        const b = again.encode(texts, { kind: "query" });
        assert.ok(a.equal(b), `${name}: outputs differ after save/load`);
      });
      const saved = loadSafetensors(join(dir, "model.safetensors"));
      const original = loadSafetensors(join(FIXTURES, name, "model.safetensors"));
      assert.deepEqual([...saved.keys()].sort(), [...original.keys()].sort());
      for (const [k, t] of original) assert.ok(saved.get(k)!.equal(t), k);
      const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
      assert.equal(cfg.model_type, name === "bert-tiny" ? "bert" : "nomic_bert");
      assert.deepEqual(JSON.parse(readFileSync(join(dir, "modules.json"), "utf8")).length, 3);
      assert.equal(again.prompts.query, model.prompts.query);
      // sharded save loads the same
      const sharded = tmp();
      model.save(sharded, { maxShardBytes: 64 * 1024 });
      const c = EmbeddingModel.load(sharded);
      tidy(() => assert.ok(c.encode(texts).equal(model.encode(texts))));
    }
  });

  it("loads checkpoints whose keys carry a 'bert.' prefix and ignores heads", () => {
    const src = join(FIXTURES, "bert-tiny");
    const dir = tmp();
    for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json"])
      copyFileSync(join(src, f), join(dir, f));
    const weights = loadSafetensors(join(src, "model.safetensors"));
    const prefixed: Record<string, Tensor> = {};
    for (const [k, t] of weights) prefixed[`bert.${k}`] = t;
    prefixed["cls.predictions.bias"] = weights.get("embeddings.LayerNorm.bias")!;
    saveSafetensors(join(dir, "model.safetensors"), prefixed);
    const a = EmbeddingModel.load(dir);
    const b = EmbeddingModel.load(src);
    tidy(() => assert.ok(a.encode(["hello"]).equal(b.encode(["hello"]))));
  });

  it("creates new models with BERT's initialisation", () => {
    const tok = Tokenizer.fromDir(join(FIXTURES, "tokenizer"));
    const cfg = bertConfig({ vocabSize: 4096, hiddenSize: 64, numLayers: 2, numHeads: 4 });
    const m = EmbeddingModel.create(cfg, tok, { seed: 3 });
    const w = m.params.get("encoder.layer.0.attention.self.query.weight")!.toArray();
    const mean = w.reduce((a, b) => a + b, 0) / w.length;
    const std = Math.sqrt(w.reduce((a, b) => a + (b - mean) ** 2, 0) / w.length);
    assert.ok(Math.abs(mean) < 0.002 && Math.abs(std - 0.02) < 0.002, `mean ${mean} std ${std}`);
    assert.ok(
      m.params
        .get("encoder.layer.0.output.LayerNorm.weight")!
        .toArray()
        .every((v) => v === 1),
    );
    assert.ok(
      m.params
        .get("encoder.layer.0.output.dense.bias")!
        .toArray()
        .every((v) => v === 0),
    );
    assert.ok(
      m.params
        .get("embeddings.word_embeddings.weight")!
        .select(0, 0)
        .toArray()
        .every((v) => v === 0),
    );
    const again = EmbeddingModel.create(cfg, tok, { seed: 3 });
    assert.ok(
      again.params
        .get("encoder.layer.1.intermediate.dense.weight")!
        .equal(m.params.get("encoder.layer.1.intermediate.dense.weight")!),
    );
    const e = m.encode(["one", "two"]);
    assert.deepEqual([...e.shape], [2, 64]);
    assertClose(e.norm(2, 1).toArray(), [1, 1], 1e-5);
  });
});

describe("encode", () => {
  it("returns rows in input order whatever the batching, equal to one-at-a-time embeddings", () => {
    const model = EmbeddingModel.load(join(FIXTURES, "nomic-tiny"));
    const texts = [
      "short",
      "a much longer text about compression utilities and json processors",
      "mid length text",
      "",
      "x y z",
    ];
    tidy(() => {
      const all = model.encode(texts, { batchSize: 2, kind: "document" });
      texts.forEach((t, i) => {
        const one = model.encode([t], { batchSize: 1, kind: "document" });
        assertClose(all.select(0, i).toArray(), one.select(0, 0).toArray(), 2e-6, 0, `row ${i}`);
      });
      // prefixes: the model's document prompt by default, overridable and removable
      const withPrompt = model.encode(["x"], { kind: "document" });
      const explicit = model.encode(["search_document: x"], { prefix: false });
      assert.ok(withPrompt.equal(explicit));
      assert.ok(model.encode(["x"], { prefix: "search_document: " }).equal(explicit));
      assert.ok(!model.encode(["x"], { kind: "query" }).equal(explicit));
    });
    let calls = 0;
    model.encode(texts, { batchSize: 2, onProgress: () => calls++ });
    assert.equal(calls, 3);
    assert.throws(() => model.encode(texts, { batchSize: 0 }), /batchSize/);
    assert.deepEqual([...model.encode([]).shape], [0, 64]);
  });
});

describe("bad model inputs", () => {
  const copyModel = (name: string) => {
    const dir = tmp();
    cpSync(join(FIXTURES, name), dir, { recursive: true });
    return dir;
  };
  it("unknown architectures and broken configs name the file and field", () => {
    const dir = copyModel("bert-tiny");
    const cfgPath = join(dir, "config.json");
    const cfg = JSON.parse(readFileSync(cfgPath, "utf8"));
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, model_type: "llama", architectures: ["LlamaModel"] }));
    assert.throws(
      () => EmbeddingModel.load(dir),
      /config\.json: unknown model_type "llama" \(architectures \["LlamaModel"\]\)/,
    );
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, hidden_size: undefined }));
    assert.throws(() => EmbeddingModel.load(dir), /config\.json: missing field 'hidden_size'/);
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, num_hidden_layers: 1e9 }));
    assert.throws(() => EmbeddingModel.load(dir), /'num_hidden_layers' = 1000000000 is absurd/);
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, hidden_act: "mish" }));
    assert.throws(() => EmbeddingModel.load(dir), /unsupported hidden_act "mish"/);
    writeFileSync(cfgPath, "{ not json");
    assert.throws(() => EmbeddingModel.load(dir), /config\.json: cannot read JSON/);
    assert.throws(
      () =>
        parseConfig({
          model_type: "bert",
          vocab_size: 10,
          hidden_size: 10,
          num_hidden_layers: 1,
          num_attention_heads: 3,
          intermediate_size: 4,
          max_position_embeddings: 8,
        }),
      /not divisible/,
    );
    rmSync(cfgPath);
    assert.throws(() => EmbeddingModel.load(dir), /no config\.json/);
    assert.throws(() => EmbeddingModel.load(join(dir, "nope")), /no such model directory/);
  });
  it("missing tensors and shape mismatches name the file and tensor", () => {
    const dir = copyModel("nomic-tiny");
    const weights = loadSafetensors(join(dir, "model.safetensors"));
    const missing = new Map(weights);
    missing.delete("encoder.layers.1.mlp.fc12.weight");
    saveSafetensors(join(dir, "model.safetensors"), missing);
    assert.throws(
      () => EmbeddingModel.load(dir),
      /model\.safetensors: missing tensor 'encoder\.layers\.1\.mlp\.fc12\.weight'/,
    );
    const wrong = new Map(weights);
    wrong.set("encoder.layers.0.attn.Wqkv.weight", weights.get("encoder.layers.0.attn.out_proj.weight")!);
    saveSafetensors(join(dir, "model.safetensors"), wrong);
    assert.throws(
      () => EmbeddingModel.load(dir),
      /tensor 'encoder\.layers\.0\.attn\.Wqkv\.weight' has shape \[64, 64\], .*config\.json implies \[192, 64\]/,
    );
    writeFileSync(join(dir, "model.safetensors"), "garbage");
    assert.throws(() => EmbeddingModel.load(dir), /model\.safetensors: file has 7 bytes/);
  });
  it("sequences longer than the position table are refused", () => {
    const model = EmbeddingModel.load(join(FIXTURES, "bert-tiny"));
    assert.throws(() => model.encode(["a ".repeat(100)], { maxLength: 100 }), /exceeds max_position_embeddings 64/);
  });
});
