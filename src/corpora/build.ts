/**
 * Builds the offline continual-retrieval benchmark from Debian-packaged text: for every task
 * source a BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv) plus training pairs
 * (train.jsonl), and a general pair corpus for pre-training the base encoder. Splits are
 * deterministic: pairs are ordered by a seeded hash of their id; the first `testQueries` are
 * test queries, the next `trainPairs` (or all that are left) training pairs, and the corpus holds the test documents
 * plus the following documents up to `corpusSize`. Duplicate queries and documents are dropped.
 * Written ids (`<task>:<id>`, `q:<task>:<id>`) hold no whitespace (see fileIds); the split order
 * hashes the source's own id, so it is the same as before ids were rewritten.
 * The folder is written under a temporary name and renamed when complete.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { writeQrels } from "../data/beir.js";
import { debian } from "./debian.js";
import { foldoc } from "./foldoc.js";
import { GENERAL_SOURCES } from "./general.js";
import { manpages } from "./manpages.js";
import { pydoc } from "./pydoc.js";
import { checkInstalled, fileIds, firstWords, type Pair, type Source } from "./source.js";
import { wordnet } from "./wordnet.js";

export const TASK_SOURCES: Record<string, Source> = {
  debian,
  wordnet,
  foldoc,
  man: manpages,
  python: pydoc,
};

export interface BuildOptions {
  out: string;
  tasks: string[];
  trainPairs: number;
  testQueries: number;
  corpusSize: number;
  generalPairs: number;
  /** documents are cut to this many words, queries to a quarter of it */
  maxWords: number;
  seed: number;
}

export interface TaskStats {
  name: string;
  description: string;
  packages: string[];
  licence: string;
  available: number;
  train: number;
  testQueries: number;
  corpus: number;
}

export interface BuildResult {
  out: string;
  tasks: TaskStats[];
  general: { sources: string[]; available: number; pairs: number };
  built: boolean;
}

/** FNV-1a over the seed and id: a stable, seeded order. */
export function hashOrder(seed: number, id: string): number {
  let h = 0x811c9dc5;
  const s = `${seed}:${id}`;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** Seeded order, truncation, and removal of duplicate queries and documents (case-insensitive). */
export function preparePairs(pairs: Pair[], seed: number, maxWords: number): Pair[] {
  const sorted = pairs
    .map((p) => ({ p, h: hashOrder(seed, p.id) }))
    .sort((a, b) => a.h - b.h || (a.p.id < b.p.id ? -1 : 1))
    .map(({ p }) => ({
      id: p.id,
      query: firstWords(p.query, Math.max(8, Math.floor(maxWords / 4))),
      document: firstWords(p.document, maxWords),
    }));
  const seenQ = new Set<string>();
  const seenD = new Set<string>();
  const out: Pair[] = [];
  for (const p of sorted) {
    const q = p.query.toLowerCase();
    const d = p.document.toLowerCase();
    if (seenQ.has(q) || seenD.has(d) || q === d) continue;
    seenQ.add(q);
    seenD.add(d);
    out.push(p);
  }
  return out;
}

const jsonl = (rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join("\n") + (rows.length ? "\n" : "");

/** Writes one task's BEIR folder and training pairs; returns its statistics. */
function writeTask(dir: string, source: Source, pairs: Pair[], ids: Map<string, string>, o: BuildOptions): TaskStats {
  // a small source gives all its pairs beyond the test queries to training
  if (pairs.length < o.testQueries + 10) {
    throw new Error(
      `source '${source.name}' has ${pairs.length} distinct pairs, too few for ${o.testQueries} test queries and training pairs`,
    );
  }
  const need = Math.min(pairs.length, o.testQueries + o.trainPairs);
  const test = pairs.slice(0, o.testQueries);
  const train = pairs.slice(o.testQueries, need);
  // the test documents, then the following documents as distractors
  const corpusPairs = pairs.slice(0, Math.max(o.corpusSize, o.testQueries));
  const docId = (p: Pair) => `${source.name}:${ids.get(p.id)}`;
  mkdirSync(join(dir, "qrels"), { recursive: true });
  writeFileSync(
    join(dir, "corpus.jsonl"),
    jsonl(corpusPairs.map((p) => ({ _id: docId(p), title: "", text: p.document }))),
  );
  writeFileSync(join(dir, "queries.jsonl"), jsonl(test.map((p) => ({ _id: `q:${docId(p)}`, text: p.query }))));
  writeQrels(
    join(dir, "qrels", "test.tsv"),
    test.map((p) => [`q:${docId(p)}`, docId(p), 1]),
  );
  writeFileSync(join(dir, "train.jsonl"), jsonl(train.map((p) => ({ query: p.query, document: p.document }))));
  return {
    name: source.name,
    description: source.description,
    packages: source.packages,
    licence: source.licence,
    available: pairs.length,
    train: train.length,
    testQueries: test.length,
    corpus: corpusPairs.length,
  };
}

function readme(r: Omit<BuildResult, "built">, o: BuildOptions): string {
  const rows = r.tasks
    .map(
      (t) =>
        `| ${t.name} | ${t.description} | ${t.train} | ${t.testQueries} | ${t.corpus} | ${t.available} | ${t.packages.join(", ")} | ${t.licence} |`,
    )
    .join("\n");
  return `# qdc offline continual-retrieval benchmark

Built by \`qdc data build\` from Debian-packaged text on this machine (seed ${o.seed}; documents cut to
${o.maxWords} words). Tasks arrive in this order: ${r.tasks.map((t) => t.name).join(" → ")}.

Each task folder is a BEIR folder (\`corpus.jsonl\`, \`queries.jsonl\`, \`qrels/test.tsv\`) plus
\`train.jsonl\` ({query, document} training pairs; hard negatives are mined later with the base model).
Test queries are never training queries; the corpus holds the test documents and further documents
of the same source (training documents included) as distractors.

| task | pairs | train pairs | test queries | corpus | distinct pairs available | Debian packages | licence |
|---|---|---|---|---|---|---|---|
${rows}

General pre-training corpus (\`general/train.jsonl\`): ${r.general.pairs} pairs of ${r.general.available}
available, from ${r.general.sources.join(" and ")} (inverse cloze: a sentence → the rest of its paragraph).
GNU manuals: GNU Free Documentation License; Perl documentation: GPL-1+ or Artistic License.
`;
}

/** Builds the benchmark folder, or returns the existing one when it was built with the same options. */
export async function buildBenchmark(o: BuildOptions, log: (m: string) => void = () => {}): Promise<BuildResult> {
  const stamp = join(o.out, "build.json");
  if (existsSync(stamp)) {
    const prev = JSON.parse(readFileSync(stamp, "utf8")) as { options: BuildOptions; result: BuildResult };
    if (JSON.stringify(prev.options) === JSON.stringify(o)) return { ...prev.result, built: false };
    throw new Error(`${o.out} was built with other options (${stamp}); remove it or choose another output folder`);
  }
  for (const name of o.tasks)
    if (!TASK_SOURCES[name])
      throw new Error(`unknown task source '${name}': use ${Object.keys(TASK_SOURCES).join(", ")}`);
  const sources = o.tasks.map((n) => TASK_SOURCES[n] as Source);
  for (const s of [...sources, ...GENERAL_SOURCES]) checkInstalled(s);
  const tmp = `${o.out}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    const tasks: TaskStats[] = [];
    for (const s of sources) {
      const t0 = performance.now();
      const read = await s.read();
      // ids without whitespace (TREC runs and qrels cannot hold any), from every pair of the source
      const ids = fileIds(read.map((p) => p.id));
      const pairs = preparePairs(read, o.seed, o.maxWords);
      tasks.push(writeTask(join(tmp, s.name), s, pairs, ids, o));
      log(`data: ${s.name}: ${pairs.length} distinct pairs (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    }
    const general: Pair[] = [];
    for (const s of GENERAL_SOURCES) general.push(...(await s.read()));
    const gen = preparePairs(general, o.seed, o.maxWords);
    const genPairs = gen.slice(0, o.generalPairs);
    mkdirSync(join(tmp, "general"), { recursive: true });
    writeFileSync(
      join(tmp, "general", "train.jsonl"),
      jsonl(genPairs.map((p) => ({ query: p.query, document: p.document }))),
    );
    log(`data: general: ${genPairs.length} of ${gen.length} pairs`);
    const result = {
      out: o.out,
      tasks,
      general: { sources: GENERAL_SOURCES.map((s) => s.name), available: gen.length, pairs: genPairs.length },
    };
    writeFileSync(join(tmp, "README.md"), readme(result, o));
    writeFileSync(join(tmp, "build.json"), `${JSON.stringify({ options: o, result }, null, 1)}\n`);
    mkdirSync(dirname(o.out), { recursive: true });
    rmSync(o.out, { recursive: true, force: true });
    renameSync(tmp, o.out);
    return { ...result, built: true };
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}
