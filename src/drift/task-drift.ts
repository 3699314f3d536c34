/**
 * Drift of one continual-learning step: after a task's model is trained from its parent, the
 * task's training queries (a seeded sample) are embedded by both and the requested compensators
 * are fitted and saved beside the new model (`<dir>/drift/<method>.safetensors`). `auto` uses the
 * sampled rows' own documents as relevance: held-out queries must find their positive document.
 */
import { type RowSource, RowStream } from "../data/pairs.js";
import { type BetweenModelsResult, type FitMethod, fitBetweenModels } from "./between-models.js";

export interface TaskDriftOptions {
  parent: string;
  dir: string;
  data: RowSource;
  methods: FitMethod[];
  /** training queries to sample (default 2,000) */
  queries?: number;
  seed?: number;
  device?: string;
  batchSize?: number;
  maxLength?: number;
}

export async function fitTaskDrift(o: TaskDriftOptions): Promise<BetweenModelsResult> {
  const stream = new RowStream(o.data, { shuffle: true, seed: o.seed ?? 0 });
  const n = Math.min(o.queries ?? 2000, await stream.count());
  const rows = await stream.next(n);
  return fitBetweenModels({
    oldDir: o.parent,
    newDir: o.dir,
    queries: rows.map((r) => r.query),
    relevance: { documents: rows.map((r) => r.document), relevant: rows.map((_, i) => [i]) },
    methods: o.methods,
    device: o.device,
    batchSize: o.batchSize,
    maxLength: o.maxLength,
    fittedOn: { data: o.data, queries: n, sampleSeed: o.seed ?? 0 },
  });
}

/** An `afterTask` hook for the continual runner that fits the run's compensators (idempotent). */
export function driftAfterTask(
  settings: { methods: FitMethod[]; queries: number } | false,
  opts: { device?: string; log?: (msg: string) => void } = {},
): ((t: { name: string; parent: string; dir: string; data: RowSource }) => Promise<void>) | undefined {
  if (!settings) return undefined;
  return async (t) => {
    const r = await fitTaskDrift({
      parent: t.parent,
      dir: t.dir,
      data: t.data,
      methods: settings.methods,
      queries: settings.queries,
      device: opts.device,
    });
    const names = Object.keys(r.written);
    if (names.length) {
      const picked = r.auto ? ` (auto picked ${r.auto.picked} by held-out ${r.auto.criterion})` : "";
      opts.log?.(`${t.name}: fitted ${names.join(", ")} drift${picked}`);
    }
  };
}
