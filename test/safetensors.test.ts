import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  type DType,
  loadCheckpoint,
  loadSafetensors,
  readHeader,
  saveCheckpoint,
  saveSafetensors,
  type Tensor,
  tensor,
  tidy,
} from "../src/index.js";
import { FIXTURES } from "./helpers.js";

const tmp = () => mkdtempSync(join(tmpdir(), "qdc-st-"));

/** An independent reader for a float32 tensor: header JSON and little-endian floats by hand. */
function rawF32(path: string, name: string): { shape: number[]; values: number[] } {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8"));
  const e = header[name];
  assert.equal(e.dtype, "F32");
  const start = 8 + n + e.data_offsets[0];
  const count = (e.data_offsets[1] - e.data_offsets[0]) / 4;
  return { shape: e.shape, values: Array.from({ length: count }, (_, i) => buf.readFloatLE(start + 4 * i)) };
}

describe("safetensors", () => {
  it("round-trips every dtype with metadata", () => {
    const dir = tmp();
    const path = join(dir, "all.safetensors");
    const src: Record<string, Tensor> = {
      f32: tensor([
        [1.5, -2],
        [3, 4],
      ]),
      f64: tensor([Math.PI, -1e300], { dtype: "float64" }),
      f16: tensor([0.5, -3], { dtype: "float16" }),
      bf16: tensor([0.5, -3], { dtype: "bfloat16" }),
      i64: tensor(new BigInt64Array([-(2n ** 60n), 5n])),
      i32: tensor(new Int32Array([-7, 9])),
      i16: tensor(new Int16Array([-7, 9])),
      i8: tensor(new Int8Array([-7, 9])),
      u8: tensor(new Uint8Array([0, 255])),
      bool: tensor([true, false, true], { dtype: "bool" }),
      empty: tensor(new Float32Array(0), { shape: [0, 3] }),
      scalar: tensor([7], { shape: [] }),
    };
    saveSafetensors(path, src, { format: "pt", note: "round trip" });
    const header = readHeader(path);
    assert.deepEqual(header.metadata, { format: "pt", note: "round trip" });
    // the header is padded to 8 bytes as the format recommends
    assert.equal(Number(readFileSync(path).readBigUInt64LE(0)) % 8, 0);
    const back = loadSafetensors(path);
    for (const [name, t] of Object.entries(src)) {
      const b = back.get(name)!;
      assert.equal(b.dtype, t.dtype, name);
      assert.deepEqual(b.shape, t.shape, name);
      assert.deepEqual(b.data(), t.data(), name);
    }
    assert.deepEqual([...loadSafetensors(path, { names: ["i8"] }).keys()], ["i8"]);
    assert.throws(() => loadSafetensors(path, { names: ["nope"] }), /has no tensor 'nope'/);
    // nothing left behind but the file itself
    assert.deepEqual(readdirSync(dir), ["all.safetensors"]);
  });

  it("reads every fixture file: shapes, dtypes and values agree with an independent parser", () => {
    const files: string[] = [];
    for (const sub of readdirSync(FIXTURES)) {
      const d = join(FIXTURES, sub);
      if (!statSync(d).isDirectory()) continue;
      for (const f of readdirSync(d)) if (f.endsWith(".safetensors")) files.push(join(d, f));
    }
    assert.ok(files.length >= 7, `found ${files.length} fixture files in ${FIXTURES}`);
    for (const path of files) {
      tidy(() => {
        const tensors = loadSafetensors(path);
        const header = readHeader(path);
        assert.ok(tensors.size > 0, path);
        for (const [name, t] of tensors) {
          const info = header.tensors.get(name)!;
          assert.deepEqual([...t.shape], info.shape, `${path}:${name}`);
          assert.equal(t.dtype, info.dtype as DType);
          if (t.dtype === "float32") {
            const raw = rawF32(path, name);
            assert.deepEqual(t.toArray(), raw.values, `${path}:${name}`);
          }
        }
      });
    }
    const bert = loadSafetensors(join(FIXTURES, "bert-tiny/model.safetensors"));
    // BERT initialisation: LayerNorm weights are ones and biases zeros
    assert.ok(
      bert
        .get("embeddings.LayerNorm.weight")!
        .toArray()
        .every((v) => v === 1),
    );
    assert.ok(
      bert
        .get("embeddings.LayerNorm.bias")!
        .toArray()
        .every((v) => v === 0),
    );
    assert.deepEqual([...bert.get("embeddings.word_embeddings.weight")!.shape], [4096, 64]);
  });

  it("writes and reads sharded checkpoints through model.safetensors.index.json", () => {
    const dir = tmp();
    const tensors = new Map<string, Tensor>([
      ["a", tensor(new Float32Array(100).fill(1))],
      ["b", tensor(new Float32Array(100).fill(2))],
      ["c", tensor(new Float32Array(10).fill(3))],
    ]);
    const files = saveCheckpoint(dir, tensors, { maxShardBytes: 500 });
    assert.equal(files.length, 2);
    const index = JSON.parse(readFileSync(join(dir, "model.safetensors.index.json"), "utf8"));
    assert.equal(index.metadata.total_size, 840);
    assert.deepEqual(index.weight_map, { a: files[0], b: files[1], c: files[1] });
    const back = loadCheckpoint(dir);
    assert.deepEqual([...back.keys()].sort(), ["a", "b", "c"]);
    assert.deepEqual(back.get("c")!.toArray(), new Array(10).fill(3));
    assert.deepEqual([...loadCheckpoint(dir, { names: ["b"] }).keys()], ["b"]);
    // a single file when it fits, and the old index is removed
    saveCheckpoint(dir, tensors);
    assert.equal(existsSync(join(dir, "model.safetensors.index.json")), false);
    assert.equal(loadCheckpoint(dir).size, 3);
    // an index naming a missing shard
    const bad = tmp();
    writeFileSync(join(bad, "model.safetensors.index.json"), JSON.stringify({ weight_map: { a: "gone.safetensors" } }));
    assert.throws(() => loadCheckpoint(bad), /gone\.safetensors/);
    assert.throws(() => loadCheckpoint(tmp()), /no model\.safetensors or model\.safetensors\.index\.json/);
  });

  it("rejects truncated and corrupt files with errors naming the file and tensor", () => {
    const dir = tmp();
    const good = join(dir, "good.safetensors");
    saveSafetensors(good, {
      weight: tensor([
        [1, 2],
        [3, 4],
      ]),
    });
    const bytes = readFileSync(good);
    const write = (name: string, b: Uint8Array | string) => {
      const p = join(dir, name);
      writeFileSync(p, b);
      return p;
    };
    const truncated = write("truncated.safetensors", bytes.subarray(0, bytes.length - 4));
    assert.throws(
      () => loadSafetensors(truncated),
      /truncated\.safetensors: tensor 'weight': data ends at byte 16 of a 12-byte data section/,
    );
    assert.throws(() => loadSafetensors(write("tiny.safetensors", "abc")), /tiny\.safetensors: file has 3 bytes/);
    const hugeLen = Buffer.alloc(16);
    hugeLen.writeBigUInt64LE(2n ** 40n);
    assert.throws(() => loadSafetensors(write("huge.safetensors", hugeLen)), /header length \d+ is absurd/);
    const notJson = Buffer.concat([Buffer.from([4, 0, 0, 0, 0, 0, 0, 0]), Buffer.from("{{{{")]);
    assert.throws(
      () => loadSafetensors(write("notjson.safetensors", notJson)),
      /notjson\.safetensors: header is not valid JSON/,
    );
    const withHeader = (h: object, data = 16) => {
      const json = Buffer.from(JSON.stringify(h));
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(json.length));
      return Buffer.concat([len, json, Buffer.alloc(data)]);
    };
    assert.throws(
      () =>
        loadSafetensors(
          write("dtype.safetensors", withHeader({ w: { dtype: "F8_E4M3", shape: [4], data_offsets: [0, 4] } })),
        ),
      /dtype\.safetensors: tensor 'w': unsupported dtype "F8_E4M3"/,
    );
    assert.throws(
      () =>
        loadSafetensors(
          write("size.safetensors", withHeader({ w: { dtype: "F32", shape: [3], data_offsets: [0, 16] } })),
        ),
      /tensor 'w': 16 bytes of data for shape \[3\] float32, which needs 12/,
    );
    assert.throws(
      () =>
        loadSafetensors(
          write(
            "overlap.safetensors",
            withHeader({
              a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
              b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
            }),
          ),
        ),
      /tensors 'a' and 'b' overlap/,
    );
    assert.throws(
      () =>
        loadSafetensors(
          write("shape.safetensors", withHeader({ w: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } })),
        ),
      /tensor 'w': shape must be a list of non-negative integers/,
    );
    assert.throws(() => loadSafetensors(join(dir, "missing.safetensors")), /ENOENT/);
    assert.throws(() => saveSafetensors(join(dir, "x.safetensors"), { __metadata__: tensor([1]) }), /reserved/);
  });
});
