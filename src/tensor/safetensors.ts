/**
 * The safetensors format, read and written in TypeScript: an 8-byte little-endian header length,
 * a JSON header { name: { dtype, shape, data_offsets: [begin, end] }, __metadata__? }, then the
 * raw little-endian data. Reading validates the header and reads each tensor's byte range straight
 * into a new tensor; writing goes to a temporary file renamed into place. Sharded checkpoints are
 * named by `model.safetensors.index.json` ({ metadata, weight_map: { tensor: file } }).
 */
import {
  closeSync,
  existsSync,
  fstatSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { type DType, dtypeCode, ITEM_SIZE } from "./dtype.js";
import { N } from "./native.js";
import { type Device, Tensor } from "./tensor.js";

const TO_DTYPE: Record<string, DType> = {
  F32: "float32",
  F64: "float64",
  F16: "float16",
  BF16: "bfloat16",
  I64: "int64",
  I32: "int32",
  I16: "int16",
  I8: "int8",
  U8: "uint8",
  BOOL: "bool",
};
const FROM_DTYPE = Object.fromEntries(Object.entries(TO_DTYPE).map(([k, v]) => [v, k])) as Record<DType, string>;
const MAX_HEADER = 100 * 1024 * 1024;

export interface TensorInfo {
  dtype: DType;
  shape: number[];
  /** Byte range inside the file (absolute). */
  begin: number;
  end: number;
}
export interface SafetensorsHeader {
  path: string;
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
}

export class SafetensorsError extends Error {
  constructor(path: string, message: string) {
    super(`${path}: ${message}`);
    this.name = "SafetensorsError";
  }
}

/** Reads and validates the header of a .safetensors file. */
export function readHeader(path: string): SafetensorsHeader {
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    if (size < 8) throw new SafetensorsError(path, `file has ${size} bytes, too short for a safetensors header`);
    const lenBuf = Buffer.alloc(8);
    readSync(fd, lenBuf, 0, 8, 0);
    const len = Number(lenBuf.readBigUInt64LE(0));
    if (len > MAX_HEADER)
      throw new SafetensorsError(path, `header length ${len} is absurd (limit ${MAX_HEADER}): not a safetensors file?`);
    if (8 + len > size)
      throw new SafetensorsError(
        path,
        `header length ${len} runs past the end of the file (${size} bytes): truncated?`,
      );
    const headerBuf = Buffer.alloc(len);
    readSync(fd, headerBuf, 0, len, 8);
    let json: unknown;
    try {
      json = JSON.parse(headerBuf.toString("utf8"));
    } catch (e) {
      throw new SafetensorsError(path, `header is not valid JSON (${(e as Error).message})`);
    }
    if (json === null || typeof json !== "object" || Array.isArray(json))
      throw new SafetensorsError(path, "header is not a JSON object");
    const dataStart = 8 + len;
    const dataLen = size - dataStart;
    const tensors = new Map<string, TensorInfo>();
    let metadata: Record<string, string> = {};
    const ranges: [number, number, string][] = [];
    for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
      if (name === "__metadata__") {
        if (raw === null || typeof raw !== "object" || Object.values(raw).some((v) => typeof v !== "string")) {
          throw new SafetensorsError(path, "__metadata__ must map strings to strings");
        }
        metadata = raw as Record<string, string>;
        continue;
      }
      const r = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      const dtype = TO_DTYPE[String(r?.dtype)];
      if (!dtype)
        throw new SafetensorsError(
          path,
          `tensor '${name}': unsupported dtype ${JSON.stringify(r?.dtype)} (supported: ${Object.keys(TO_DTYPE).join(", ")})`,
        );
      if (!Array.isArray(r.shape) || !r.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
        throw new SafetensorsError(path, `tensor '${name}': shape must be a list of non-negative integers`);
      }
      const off = r.data_offsets;
      if (
        !Array.isArray(off) ||
        off.length !== 2 ||
        !off.every((d) => Number.isSafeInteger(d) && d >= 0) ||
        off[0] > off[1]
      ) {
        throw new SafetensorsError(path, `tensor '${name}': data_offsets must be [begin, end] with 0 <= begin <= end`);
      }
      const shape = r.shape as number[];
      const need = shape.reduce((a, b) => a * b, 1) * ITEM_SIZE[dtype];
      const [b, e] = off as [number, number];
      if (e - b !== need) {
        throw new SafetensorsError(
          path,
          `tensor '${name}': ${e - b} bytes of data for shape [${shape.join(", ")}] ${dtype}, which needs ${need}`,
        );
      }
      if (e > dataLen) {
        throw new SafetensorsError(
          path,
          `tensor '${name}': data ends at byte ${e} of a ${dataLen}-byte data section: file truncated?`,
        );
      }
      tensors.set(name, { dtype, shape, begin: dataStart + b, end: dataStart + e });
      ranges.push([b, e, name]);
    }
    ranges.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    for (let i = 1; i < ranges.length; i++) {
      const prev = ranges[i - 1] as [number, number, string];
      const cur = ranges[i] as [number, number, string];
      if (cur[0] < prev[1]) throw new SafetensorsError(path, `tensors '${prev[2]}' and '${cur[2]}' overlap`);
    }
    return { path, tensors, metadata };
  } finally {
    closeSync(fd);
  }
}

export interface LoadOptions {
  device?: Device | string;
  /** Load only these tensors (an error names any that is missing). */
  names?: Iterable<string>;
}

/** Loads tensors from one .safetensors file. */
export function loadSafetensors(path: string, opts: LoadOptions = {}): Map<string, Tensor> {
  const header = readHeader(path);
  const names = opts.names ? [...opts.names] : [...header.tensors.keys()];
  const out = new Map<string, Tensor>();
  try {
    for (const name of names) {
      const info = header.tensors.get(name);
      if (!info) throw new SafetensorsError(path, `has no tensor '${name}'`);
      out.set(name, Tensor.wrap(N.fromFile(path, info.begin, dtypeCode(info.dtype), info.shape, opts.device ?? null)));
    }
  } catch (e) {
    for (const t of out.values()) t.dispose();
    throw e;
  }
  return out;
}

/**
 * Loads rows [start, start + count) of a tensor along its first dimension straight from the file
 * (one pread into tensor memory), so a large matrix can be streamed in chunks.
 */
export function loadRows(
  path: string,
  name: string,
  start: number,
  count: number,
  opts: { device?: Device | string } = {},
): Tensor {
  const info = readHeader(path).tensors.get(name);
  if (!info) throw new SafetensorsError(path, `has no tensor '${name}'`);
  const [rows, ...rest] = info.shape;
  if (rows === undefined) throw new SafetensorsError(path, `tensor '${name}' is a scalar, it has no rows`);
  if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0 || start + count > rows) {
    throw new RangeError(`${path}: rows [${start}, ${start + count}) are outside tensor '${name}' of ${rows} rows`);
  }
  const rowBytes = rows ? (info.end - info.begin) / rows : 0;
  return Tensor.wrap(
    N.fromFile(path, info.begin + start * rowBytes, dtypeCode(info.dtype), [count, ...rest], opts.device ?? null),
  );
}

/** Writes `path + suffix` and renames it over `path`, so readers never see a half-written file. */
export function writeAtomically(path: string, write: (fd: number) => void): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  const fd = openSync(tmp, "w");
  try {
    write(fd);
    closeSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  renameSync(tmp, path);
}

function writeAll(fd: number, buf: Uint8Array): void {
  let off = 0;
  while (off < buf.byteLength) off += writeSync(fd, buf, off, buf.byteLength - off);
}

/** Writes tensors (any device; copied to the host one at a time) and string metadata. */
export function saveSafetensors(
  path: string,
  tensors: Map<string, Tensor> | Record<string, Tensor>,
  metadata: Record<string, string> = {},
): void {
  const entries = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of entries) {
    if (name === "__metadata__") throw new TypeError("'__metadata__' is reserved and cannot name a tensor");
    const bytes = t.numel * ITEM_SIZE[t.dtype];
    header[name] = { dtype: FROM_DTYPE[t.dtype], shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = Buffer.from(JSON.stringify(header), "utf8");
  const pad = (8 - (json.byteLength % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  writeAtomically(path, (fd) => {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.byteLength));
    writeAll(fd, len);
    writeAll(fd, json);
    for (const [, t] of entries) writeAll(fd, new Uint8Array(N.toBuffer(t.id)));
  });
}

export const INDEX_FILE = "model.safetensors.index.json";
export const SINGLE_FILE = "model.safetensors";

/**
 * Loads a checkpoint directory: `model.safetensors`, or the shards listed by
 * `model.safetensors.index.json`.
 */
export function loadCheckpoint(dir: string, opts: LoadOptions = {}): Map<string, Tensor> {
  const indexPath = join(dir, INDEX_FILE);
  if (!existsSync(indexPath)) {
    const single = join(dir, SINGLE_FILE);
    if (!existsSync(single)) throw new Error(`${dir}: no ${SINGLE_FILE} or ${INDEX_FILE}`);
    return loadSafetensors(single, opts);
  }
  let index: { weight_map?: unknown };
  try {
    index = JSON.parse(readFileSync(indexPath, "utf8"));
  } catch (e) {
    throw new Error(`${indexPath}: not valid JSON (${(e as Error).message})`);
  }
  const map = index.weight_map;
  if (map === null || typeof map !== "object" || Object.values(map).some((f) => typeof f !== "string")) {
    throw new Error(`${indexPath}: weight_map must map tensor names to shard file names`);
  }
  const wanted = opts.names ? new Set(opts.names) : null;
  const byFile = new Map<string, string[]>();
  for (const [name, file] of Object.entries(map as Record<string, string>)) {
    if (wanted && !wanted.has(name)) continue;
    if (file.includes("/") || file.includes("\\"))
      throw new Error(`${indexPath}: shard '${file}' must be a file name in ${dir}`);
    byFile.set(file, [...(byFile.get(file) ?? []), name]);
  }
  if (wanted) {
    for (const n of wanted)
      if (!(n in (map as object))) throw new Error(`${indexPath}: weight_map has no tensor '${n}'`);
  }
  const out = new Map<string, Tensor>();
  try {
    for (const [file, names] of byFile) {
      for (const [k, t] of loadSafetensors(join(dir, file), { device: opts.device, names })) out.set(k, t);
    }
  } catch (e) {
    for (const t of out.values()) t.dispose();
    throw e;
  }
  return out;
}

/**
 * Writes a checkpoint directory: one `model.safetensors` when it fits in `maxShardBytes`, else
 * `model-0000i-of-0000n.safetensors` shards plus `model.safetensors.index.json`.
 */
export function saveCheckpoint(
  dir: string,
  tensors: Map<string, Tensor>,
  opts: { maxShardBytes?: number; metadata?: Record<string, string> } = {},
): string[] {
  const max = opts.maxShardBytes ?? 5 * 1024 ** 3;
  const shards: [string, Tensor][][] = [[]];
  let used = 0;
  let total = 0;
  for (const entry of tensors) {
    const bytes = entry[1].numel * ITEM_SIZE[entry[1].dtype];
    total += bytes;
    const cur = shards[shards.length - 1] as [string, Tensor][];
    if (cur.length && used + bytes > max) {
      shards.push([entry]);
      used = bytes;
    } else {
      cur.push(entry);
      used += bytes;
    }
  }
  const metadata = { format: "pt", ...opts.metadata };
  if (shards.length === 1) {
    saveSafetensors(join(dir, SINGLE_FILE), new Map(shards[0]), metadata);
    rmSync(join(dir, INDEX_FILE), { force: true });
    return [SINGLE_FILE];
  }
  const n = shards.length;
  const files = shards.map(
    (_, i) => `model-${String(i + 1).padStart(5, "0")}-of-${String(n).padStart(5, "0")}.safetensors`,
  );
  const weightMap: Record<string, string> = {};
  shards.forEach((s, i) => {
    saveSafetensors(join(dir, files[i] as string), new Map(s), metadata);
    for (const [name] of s) weightMap[name] = files[i] as string;
  });
  const index = JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2);
  writeAtomically(join(dir, INDEX_FILE), (fd) => writeAll(fd, Buffer.from(index)));
  rmSync(join(dir, SINGLE_FILE), { force: true });
  return files;
}
