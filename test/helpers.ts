/** Test helpers: closeness assertions, a finite-difference gradient check in float64, fixture models. */
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { fitBetweenModels } from "../src/drift/between-models.js";
import { EmbeddingModel, keep, noGrad, randn, type Tensor, tensor, tidy } from "../src/index.js";
import { writeLineage } from "../src/lineage/record.js";
import { buildApp } from "../src/server/http.js";
import { Reindexer } from "../src/server/reindex.js";
import { SearchService } from "../src/server/service.js";
import type { VectorStore } from "../src/store/store.js";

export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  atol = 1e-6,
  rtol = 1e-5,
  what = "",
): void {
  assert.equal(actual.length, expected.length, `${what} length ${actual.length} != ${expected.length}`);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i] as number;
    const e = expected[i] as number;
    if (Number.isNaN(e)) {
      assert.ok(Number.isNaN(a), `${what}[${i}]: expected NaN, got ${a}`);
      continue;
    }
    if (!Number.isFinite(e)) {
      assert.equal(a, e, `${what}[${i}]`);
      continue;
    }
    assert.ok(Math.abs(a - e) <= atol + rtol * Math.abs(e), `${what}[${i}]: ${a} vs expected ${e}`);
  }
}

export function values(t: Tensor): number[] {
  return t.toArray();
}

/** Deterministic pseudo-random numbers (no engine involved) for test inputs. */
export function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

export function randomArray(n: number, seed: number, lo = -1, hi = 1): Float64Array {
  const r = lcg(seed);
  return Float64Array.from({ length: n }, () => lo + (hi - lo) * r());
}

export interface GradInput {
  shape: number[];
  data: Float64Array;
}

/**
 * Checks d(sum(f(x)·w))/dx from autograd against central differences, for every element of every
 * input, in float64. `f` receives the inputs as tensors and returns one tensor.
 */
export function gradcheck(name: string, f: (xs: Tensor[]) => Tensor, inputs: GradInput[], h = 1e-6, tol = 1e-6): void {
  const weightsFor = (out: Tensor) => tensor(randomArray(out.numel, 99), { shape: [...out.shape] });
  const analytic = tidy(() => {
    const xs = inputs.map((i) => tensor(i.data.slice(), { shape: i.shape, requiresGrad: true }));
    const out = f(xs);
    const loss = out.mul(weightsFor(out)).sum();
    loss.backward();
    return xs.map((x) => {
      const g = x.grad;
      return g ? Array.from(g.data() as Float64Array) : new Array(x.numel).fill(0);
    });
  });
  const evalAt = (arrays: Float64Array[]): number =>
    tidy(() =>
      noGrad(() => {
        const xs = arrays.map((a, k) => tensor(a, { shape: (inputs[k] as GradInput).shape }));
        const out = f(xs);
        return out.mul(weightsFor(out)).sum().item();
      }),
    );
  inputs.forEach((input, k) => {
    const numeric: number[] = [];
    for (let i = 0; i < input.data.length; i++) {
      const plus = inputs.map((x) => x.data.slice());
      const minus = inputs.map((x) => x.data.slice());
      (plus[k] as Float64Array)[i] = (input.data[i] as number) + h;
      (minus[k] as Float64Array)[i] = (input.data[i] as number) - h;
      numeric.push((evalAt(plus) - evalAt(minus)) / (2 * h));
    }
    assertClose(analytic[k] as number[], numeric, tol, 1e-5, `${name}: d/dinput${k}`);
  });
}

/** The words the tests' small corpora are made of. */
export const WORDS = "river mountain compiler network kernel garden music library protocol engine ocean planet".split(
  " ",
);

/**
 * `n` short documents `doc0 … doc{n-1}` in `dir/corpus.jsonl`, each about two of WORDS: the
 * i-th's first word is WORDS[i % 12], its second WORDS[(i·stride + offset) % 12].
 */
export function wordCorpus(
  dir: string,
  n: number,
  mix: { stride: number; offset: number } = { stride: 5, offset: 3 },
): string {
  const file = join(dir, "corpus.jsonl");
  const rows = Array.from({ length: n }, (_, i) =>
    JSON.stringify({
      _id: `doc${i}`,
      text: `notes ${i} on the ${WORDS[i % 12]} and the ${WORDS[(i * mix.stride + mix.offset) % 12]}`,
    }),
  );
  writeFileSync(file, `${rows.join("\n")}\n`);
  return file;
}

/** The reference fixtures (computed with PyTorch + transformers; test/fixtures/README.md), in the repository. */
export const FIXTURES: string = new URL("../../test/fixtures/", import.meta.url).pathname.replace(/\/$/, "");

/**
 * A descendant of the bert-tiny fixture in `dir/new`: its config and tokenizer with the weights
 * after the fixture's training steps, and (with `lineage`) a lineage.json naming bert-tiny.
 */
export function trainedBertTiny(dir: string, opts: { lineage?: boolean } = {}): string {
  const oldDir = join(FIXTURES, "bert-tiny");
  const newDir = join(dir, "new");
  mkdirSync(newDir);
  for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json"])
    copyFileSync(join(oldDir, f), join(newDir, f));
  copyFileSync(join(FIXTURES, "train-step/weights_after.safetensors"), join(newDir, "model.safetensors"));
  if (opts.lineage) writeLineage(newDir, oldDir);
  return newDir;
}

/**
 * A child of `parentDir` in `dir/name`: the parent's weights plus seeded noise of relative size
 * `scale` (with `nan`, one weight becomes NaN), a lineage.json naming the parent, and (unless
 * `nan`) a mean compensator fitted on `queries`.
 */
export function derivedModel(
  parentDir: string,
  dir: string,
  name: string,
  opts: { seed?: number; scale?: number; nan?: boolean; queries?: string[] } = {},
): string {
  const out = join(dir, name);
  const parent = EmbeddingModel.load(parentDir);
  const params = new Map<string, Tensor>();
  tidy(() => {
    let i = 0;
    for (const [k, p] of parent.params) {
      const noise = randn([...p.shape], { seed: (opts.seed ?? 1) * 1000 + i++ }).mul((opts.scale ?? 0.05) * 0.02);
      let q = p.add(noise);
      if (opts.nan && k.endsWith("embeddings.word_embeddings.weight")) q = q.mul(Number.NaN);
      params.set(k, keep(q));
    }
  });
  new EmbeddingModel(parent.config, parent.tokenizer, params).save(out, { parent: parentDir });
  parent.dispose();
  for (const p of params.values()) p.dispose();
  if (!opts.nan)
    fitBetweenModels({
      oldDir: parentDir,
      newDir: out,
      queries: opts.queries ?? ["about the river", "a compiler", "the ocean and the planet", "garden music"],
      methods: ["mean"],
    });
  return out;
}

/** The search service over `store` serving `modelDir`, with its re-indexer and HTTP API on a free port. */
export async function startService(
  store: VectorStore,
  modelDir: string,
  opts: { token: string; batchSize?: number; log?: (e: Record<string, unknown>) => void },
): Promise<{ service: SearchService; reindexer: Reindexer; app: FastifyInstance; base: string }> {
  const service = await SearchService.create({ store, modelDir, log: opts.log });
  const reindexer = new Reindexer(service, { batchSize: opts.batchSize ?? 16, writeRows: opts.batchSize ?? 16 });
  const app = buildApp(service, reindexer, { token: opts.token });
  const base = await app.listen({ port: 0, host: "127.0.0.1" });
  return { service, reindexer, app, base };
}
