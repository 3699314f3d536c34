/**
 * Encoding a file of texts into one safetensors file (`embeddings`, float32, rows in input order)
 * in bounded memory: texts are encoded chunk by chunk, each chunk written atomically to
 * `<output>.parts/`, so an interrupted run resumes from the last finished chunk; the parts are then
 * streamed into the output (also written atomically) and removed. A JSONL log records every chunk.
 */
import {
  appendFileSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { chunked, readTexts } from "../data/texts.js";
import { readHeader, saveSafetensors, writeAtomically } from "../tensor/index.js";
import type { EmbeddingModel, EncodeOptions } from "./embedding-model.js";

export interface EncodeFileOptions extends Omit<EncodeOptions, "onProgress"> {
  /** Texts per chunk on disk (default 20,000). */
  chunkSize?: number;
  /** JSONL log path (default `<output>.log.jsonl`); null for none. */
  log?: string | null;
  /** Progress callback: texts done so far. */
  onProgress?: (done: number) => void;
}

export interface EncodeFileResult {
  rows: number;
  dim: number;
  seconds: number;
  resumedChunks: number;
}

export async function encodeFile(
  model: EmbeddingModel,
  input: string,
  output: string,
  opts: EncodeFileOptions = {},
): Promise<EncodeFileResult> {
  const chunkSize = opts.chunkSize ?? 20000;
  if (!Number.isInteger(chunkSize) || chunkSize < 1)
    throw new RangeError(`chunkSize must be a positive integer, got ${chunkSize}`);
  if (!existsSync(input)) throw new Error(`${input}: no such input file`);
  const partsDir = `${output}.parts`;
  const logPath = opts.log === undefined ? `${output}.log.jsonl` : opts.log;
  const log = (event: Record<string, unknown>) => {
    if (logPath) appendFileSync(logPath, `${JSON.stringify({ time: new Date().toISOString(), ...event })}\n`);
  };
  const st = statSync(input);
  // what the parts were made from: a change invalidates them
  const identity = JSON.stringify({
    input,
    size: st.size,
    mtime: st.mtimeMs,
    kind: opts.kind ?? "document",
    prefix: model.prefixFor(opts.kind ?? "document", opts.prefix),
    maxLength: opts.maxLength ?? model.maxLength,
    chunkSize,
    dim: model.dimension,
  });
  const stampPath = join(partsDir, "identity.json");
  if (existsSync(partsDir) && (!existsSync(stampPath) || readFileSync(stampPath, "utf8") !== identity)) {
    rmSync(partsDir, { recursive: true, force: true });
  }
  mkdirSync(partsDir, { recursive: true });
  writeFileSync(stampPath, identity);
  const started = Date.now();
  let rows = 0;
  let resumed = 0;
  const parts: string[] = [];
  let index = 0;
  log({ event: "start", input, output, chunkSize });
  for await (const texts of chunked(readTexts(input), chunkSize)) {
    const part = join(partsDir, `${String(index).padStart(6, "0")}.safetensors`);
    parts.push(part);
    if (existsSync(part) && readHeader(part).tensors.get("embeddings")?.shape[0] === texts.length) {
      resumed++;
    } else {
      const t0 = Date.now();
      const done = rows;
      const emb = model.encode(texts, {
        ...opts,
        onProgress: (n) => opts.onProgress?.(done + n),
      });
      saveSafetensors(part, { embeddings: emb });
      emb.dispose();
      const seconds = (Date.now() - t0) / 1000;
      log({
        event: "chunk",
        chunk: index,
        rows: texts.length,
        seconds,
        textsPerSecond: texts.length / Math.max(seconds, 1e-6),
      });
    }
    rows += texts.length;
    opts.onProgress?.(rows);
    index++;
  }
  const dim = model.dimension;
  mergeParts(parts, output, rows, dim);
  rmSync(partsDir, { recursive: true, force: true });
  const seconds = (Date.now() - started) / 1000;
  log({ event: "done", rows, dim, seconds, resumedChunks: resumed });
  return { rows, dim, seconds, resumedChunks: resumed };
}

/** Streams the parts' rows into one safetensors file holding `embeddings` [rows, dim] float32. */
function mergeParts(parts: string[], output: string, rows: number, dim: number): void {
  const header = {
    __metadata__: { format: "pt" },
    embeddings: { dtype: "F32", shape: [rows, dim], data_offsets: [0, rows * dim * 4] },
  };
  let json = Buffer.from(JSON.stringify(header));
  const pad = (8 - (json.length % 8)) % 8;
  json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  writeAtomically(output, (fd) => {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    writeSync(fd, len);
    writeSync(fd, json);
    const buf = Buffer.alloc(1 << 22);
    for (const part of parts) {
      const info = readHeader(part).tensors.get("embeddings");
      if (info?.dtype !== "float32" || info.shape[1] !== dim)
        throw new Error(`${part}: not a float32 [n, ${dim}] embeddings part`);
      const src = openSync(part, "r");
      try {
        for (let off = info.begin; off < info.end; ) {
          const n = readSync(src, buf, 0, Math.min(buf.length, info.end - off), off);
          if (n <= 0) throw new Error(`${part}: truncated`);
          let w = 0;
          while (w < n) w += writeSync(fd, buf, w, n - w);
          off += n;
        }
      } finally {
        closeSync(src);
      }
    }
  });
}
