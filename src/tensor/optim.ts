/**
 * AdamW (decoupled weight decay, as torch.optim.AdamW) with parameter groups and a settable lr,
 * gradient-norm clipping, and optimiser state save/load for resuming.
 */
import { zerosLike } from "./create.js";
import { N } from "./native.js";
import { loadSafetensors, readHeader, saveSafetensors } from "./safetensors.js";
import { keep } from "./scope.js";
import type { Tensor } from "./tensor.js";

export interface AdamWHyper {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
}
export interface ParamGroup extends Partial<AdamWHyper> {
  params: Tensor[];
}
interface Group extends AdamWHyper {
  params: Tensor[];
  expAvg: (Tensor | null)[];
  expAvgSq: (Tensor | null)[];
  steps: Float64Array;
}

const DEFAULTS: AdamWHyper = { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2 };

function check(h: AdamWHyper, where: string): void {
  const bad = (what: string) => new RangeError(`AdamW ${where}: invalid ${what}`);
  if (!(h.lr >= 0)) throw bad(`lr ${h.lr}`);
  if (!(h.betas[0] >= 0 && h.betas[0] < 1 && h.betas[1] >= 0 && h.betas[1] < 1)) throw bad(`betas ${h.betas}`);
  if (!(h.eps >= 0)) throw bad(`eps ${h.eps}`);
  if (!(h.weightDecay >= 0)) throw bad(`weight decay ${h.weightDecay}`);
}

export class AdamW {
  readonly groups: Group[];

  constructor(params: Tensor[] | ParamGroup[], defaults: Partial<AdamWHyper> = {}) {
    const d = { ...DEFAULTS, ...defaults };
    const groups: ParamGroup[] =
      params.length && !("params" in (params[0] as object))
        ? [{ params: params as Tensor[] }]
        : (params as ParamGroup[]);
    this.groups = groups.map((g, i) => {
      const h: AdamWHyper = {
        lr: g.lr ?? d.lr,
        betas: g.betas ?? d.betas,
        eps: g.eps ?? d.eps,
        weightDecay: g.weightDecay ?? d.weightDecay,
      };
      check(h, `group ${i}`);
      const n = g.params.length;
      return {
        ...h,
        params: [...g.params],
        expAvg: new Array(n).fill(null),
        expAvgSq: new Array(n).fill(null),
        steps: new Float64Array(n),
      };
    });
  }

  /** Sets the learning rate of every group. */
  setLr(lr: number): void {
    if (!(lr >= 0)) throw new RangeError(`AdamW: invalid lr ${lr}`);
    for (const g of this.groups) g.lr = lr;
  }

  /** One update of every parameter that has a gradient. */
  step(): void {
    for (const g of this.groups) {
      const active: number[] = [];
      for (let i = 0; i < g.params.length; i++) {
        const p = g.params[i] as Tensor;
        const grad = p.grad;
        if (!grad) continue;
        grad.dispose();
        if (!g.expAvg[i]) {
          g.expAvg[i] = keep(zerosLike(p));
          g.expAvgSq[i] = keep(zerosLike(p));
        }
        g.steps[i] = (g.steps[i] as number) + 1;
        active.push(i);
      }
      if (!active.length) continue;
      N.adamw(
        active.map((i) => (g.params[i] as Tensor).id),
        active.map((i) => (g.expAvg[i] as Tensor).id),
        active.map((i) => (g.expAvgSq[i] as Tensor).id),
        Float64Array.from(active, (i) => g.steps[i] as number),
        g.lr,
        g.betas[0],
        g.betas[1],
        g.eps,
        g.weightDecay,
      );
    }
  }

  /** Drops every parameter's gradient (torch's zero_grad(set_to_none=True)). */
  zeroGrad(): void {
    for (const g of this.groups) for (const p of g.params) p.grad = null;
  }

  /** Writes the state (moments as tensors, steps and hyper-parameters as metadata) to a safetensors file. */
  save(path: string): void {
    const tensors = new Map<string, Tensor>();
    const meta = this.groups.map((g, gi) => {
      g.params.forEach((_, i) => {
        const m = g.expAvg[i];
        const v = g.expAvgSq[i];
        if (m && v) {
          tensors.set(`${gi}.${i}.exp_avg`, m);
          tensors.set(`${gi}.${i}.exp_avg_sq`, v);
        }
      });
      return {
        lr: g.lr,
        betas: g.betas,
        eps: g.eps,
        weightDecay: g.weightDecay,
        size: g.params.length,
        steps: Array.from(g.steps),
      };
    });
    saveSafetensors(path, tensors, { qdc_optimizer: "adamw", groups: JSON.stringify(meta) });
  }

  /** Restores state written by `save` for the same parameter groups (sizes are checked). */
  load(path: string): void {
    const raw = readMeta(path);
    const loaded = loadSafetensors(path);
    try {
      if (raw.length !== this.groups.length)
        throw new Error(`${path}: holds ${raw.length} parameter groups, optimiser has ${this.groups.length}`);
      this.groups.forEach((g, gi) => {
        const m = raw[gi] as SavedGroup;
        if (m.size !== g.params.length)
          throw new Error(`${path}: group ${gi} holds ${m.size} parameters, optimiser has ${g.params.length}`);
        Object.assign(g, { lr: m.lr, betas: m.betas, eps: m.eps, weightDecay: m.weightDecay });
        g.steps = Float64Array.from(m.steps);
        g.params.forEach((p, i) => {
          for (const [key, slot] of [
            ["exp_avg", g.expAvg],
            ["exp_avg_sq", g.expAvgSq],
          ] as const) {
            const t = loaded.get(`${gi}.${i}.${key}`);
            slot[i]?.dispose();
            slot[i] = null;
            if (!t) continue;
            if (t.shape.join() !== p.shape.join())
              throw new Error(`${path}: ${gi}.${i}.${key} has shape [${t.shape}], parameter has [${p.shape}]`);
            slot[i] = keep(t.device === p.device ? t : t.to(p.device));
            loaded.delete(`${gi}.${i}.${key}`);
            if (slot[i] !== t) t.dispose();
          }
        });
      });
    } finally {
      for (const t of loaded.values()) t.dispose();
    }
  }
}

interface SavedGroup extends AdamWHyper {
  size: number;
  steps: number[];
}

function readMeta(path: string): SavedGroup[] {
  const meta = readHeader(path).metadata;
  if (meta.qdc_optimizer !== "adamw" || !meta.groups)
    throw new Error(`${path}: not an AdamW state file written by qdc`);
  return JSON.parse(meta.groups) as SavedGroup[];
}

/**
 * Scales the gradients of `params` so their total `normType`-norm is at most `maxNorm`
 * (torch.nn.utils.clip_grad_norm_). Returns the total norm before clipping.
 */
export function clipGradNorm(params: Tensor[], maxNorm: number, normType = 2): number {
  return N.clipGradNorm(
    params.map((p) => p.id),
    maxNorm,
    normType,
  );
}
