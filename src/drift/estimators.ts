/**
 * The drift estimators.
 * - identity: no compensation (a candidate of `auto` when compensating would hurt).
 * - mean: the paper's QDC, Δ = mean(new − old); q ↦ q − Δ.
 * - kernel: local drift as in Semantic Drift Compensation, Δ(q) = Σ wᵢδᵢ / Σ wᵢ with
 *   wᵢ = exp(−‖q − newᵢ‖² / 2σ²) over the fitted pairs (σ: median distance to the 10th neighbour).
 * - procrustes: the orthogonal W minimising ‖new·W − old‖ (W = U·Vᵀ from the SVD of newᵀ·old),
 *   optionally about the means.
 * - affine: ridge least squares old ≈ new·W + b, full or with W − I of low rank.
 * - mlp: a small residual MLP, q ↦ q + W₂·gelu(W₁q + b₁) + b₂, trained on the pairs (as Drift-Adapter);
 *   between dimensions the skip is the ridge affine map instead of q itself.
 * - local: local adapters — k-means clusters of the new space, a ridge affine map per cluster pulled
 *   towards the global one, and each query routed softly: Σⱼ softmax(−‖q − cⱼ‖²/2σ²)ⱼ·((q − μⱼ)Wⱼ + bⱼ).
 *
 * Procrustes (a semi-orthogonal map), affine, mlp and local also map a model into the space of
 * one of another dimension (Drift-Adapter's setting: an unrelated model replacing the old one).
 *
 * `invert` gives the map back (old space → new): exact for mean (q ↦ q + Δ) and Procrustes (the
 * transpose of an orthogonal map), by solving for affine (W⁻¹); kernel and MLP maps have no closed
 * inverse and are fitted in the reverse direction instead (`fitBetweenModels` writes that fit
 * beside the forward one).
 */

import { Rng } from "../data/rng.js";
import {
  AdamW,
  eye,
  keep,
  linear,
  noGrad,
  ones,
  randn,
  solve,
  stack,
  svd,
  type Tensor,
  tensor,
  tidy,
  zeros,
} from "../tensor/index.js";
import type { Compensator, Method } from "./compensator.js";

function owned(tensors: Record<string, Tensor>): Record<string, Tensor> {
  for (const t of Object.values(tensors)) keep(t);
  return tensors;
}

class Fixed implements Compensator {
  constructor(
    readonly method: Method,
    private readonly tensors: Record<string, Tensor>,
    private readonly settings: Record<string, unknown>,
    private readonly fn: (q: Tensor, t: Record<string, Tensor>) => Tensor,
  ) {}
  apply(q: Tensor): Tensor {
    return tidy(() => noGrad(() => this.fn(q.to({ dtype: "float32" }), this.tensors)));
  }
  state() {
    return { tensors: this.tensors, settings: this.settings };
  }
  dispose(): void {
    for (const t of Object.values(this.tensors)) t.dispose();
  }
}

const applyMean = (q: Tensor, t: Record<string, Tensor>) => q.sub(t.drift as Tensor);
const applyKernel = (q: Tensor, t: Record<string, Tensor>) => {
  const sigma = (t.sigma as Tensor).item();
  const centres = t.centres as Tensor;
  // ‖q − c‖² = ‖q‖² + ‖c‖² − 2 q·c; the weights are a softmax over the fitted points
  const d2 = q.square().sum(1, true).add(centres.square().sum(1).unsqueeze(0)).sub(q.matmul(centres.T).mul(2));
  const w = d2.div(-2 * sigma * sigma).softmax(1);
  return q.sub(w.matmul(t.deltas as Tensor));
};
const applyMap = (q: Tensor, t: Record<string, Tensor>) => {
  const centred = t.mu_new ? q.sub(t.mu_new) : q;
  const mapped = centred.matmul(t.W as Tensor);
  return t.b ? mapped.add(t.b) : mapped;
};
const applyMlp = (q: Tensor, t: Record<string, Tensor>) =>
  (t.A ? applyMap(q, { W: t.A, mu_new: t.A_mu as Tensor, b: t.A_b as Tensor }) : q).add(
    linear(linear(q, t.w1 as Tensor, t.b1).gelu(), t.w2 as Tensor, t.b2),
  );
const applyLocal = (q: Tensor, t: Record<string, Tensor>) => {
  const centres = t.centres as Tensor;
  const d2 = q.square().sum(1, true).add(centres.square().sum(1).unsqueeze(0)).sub(q.matmul(centres.T).mul(2));
  const w = d2.mul((t.scale as Tensor).neg()).softmax(1);
  let out: Tensor | null = null;
  for (let j = 0; j < centres.size(0); j++) {
    const part = q
      .sub((t.mu as Tensor).select(0, j))
      .matmul((t.W as Tensor).select(0, j))
      .add((t.b as Tensor).select(0, j))
      .mul(w.narrow(1, j, 1));
    out = out ? out.add(part) : part;
  }
  return out as Tensor;
};

export const APPLY: Record<Method, (q: Tensor, t: Record<string, Tensor>) => Tensor> = {
  identity: (q) => q.clone(),
  mean: applyMean,
  kernel: applyKernel,
  procrustes: applyMap,
  affine: applyMap,
  mlp: applyMlp,
  local: applyLocal,
};

/** Rebuilds a compensator from saved tensors and settings. */
export function restore(
  method: Method,
  tensors: Record<string, Tensor>,
  settings: Record<string, unknown>,
): Compensator {
  return new Fixed(method, owned(tensors), settings, APPLY[method]);
}

/** The pseudo-inverse V·S⁻¹·Uᵀ (the inverse of a square invertible matrix; singular values below 1e-8·max dropped). */
function pinv(W: Tensor): Tensor {
  const { U, S, Vh } = svd(W);
  const s = S.toArray();
  const cut = Math.max(...s) * 1e-8;
  const inv = tensor(
    s.map((x) => (x > cut ? 1 / x : 0)),
    { dtype: "float64" },
  );
  return Vh.T.mul(inv).matmul(U.T);
}

/** Methods whose maps `invert` turns around (the others are fitted in reverse). */
export const hasInverse = (m: Method): boolean => m !== "kernel" && m !== "mlp" && m !== "local";

/** The inverse map of `c` (the old model's queries into the new model's space), or null (kernel, mlp). */
export function invert(c: Compensator): Compensator | null {
  const { tensors: t, settings } = c.state();
  switch (c.method) {
    case "identity":
      return fitIdentity();
    case "mean":
      return new Fixed("mean", owned({ drift: tidy(() => (t.drift as Tensor).neg()) }), settings, applyMean);
    case "procrustes":
    case "affine": {
      // q ↦ (q − μn)·W + μo, so back: q ↦ (q − μo)·W⁻¹ + μn (W⁻¹ = Wᵀ for an orthogonal W)
      const inv = tidy(() => {
        const W = t.W as Tensor;
        const Winv = c.method === "procrustes" ? W.T.contiguous() : pinv(W.to("float64")).float();
        const out: Record<string, Tensor> = { W: Winv };
        if (t.b) out.mu_new = (t.b as Tensor).clone();
        if (t.mu_new) out.b = (t.mu_new as Tensor).clone();
        return out;
      });
      for (const [k, v] of Object.entries(inv))
        if (v.toArray().some((x) => !Number.isFinite(x))) {
          for (const x of Object.values(inv)) x.dispose();
          throw new Error(`the ${c.method} map is not invertible (its ${k} has non-finite values)`);
        }
      return new Fixed(c.method, owned(inv), { ...settings, inverted: true }, applyMap);
    }
    default:
      return null;
  }
}

export function fitIdentity(): Compensator {
  return new Fixed("identity", {}, {}, APPLY.identity);
}

export function fitMean(oldE: Tensor, newE: Tensor): Compensator {
  const drift = tidy(() => newE.sub(oldE).mean(0));
  return new Fixed("mean", owned({ drift }), {}, applyMean);
}

export function fitKernel(oldE: Tensor, newE: Tensor, opts: { sigma?: number; maxCentres?: number } = {}): Compensator {
  const n = newE.size(0);
  const m = Math.min(n, opts.maxCentres ?? 4096);
  const tensors = tidy(() => {
    const centres = newE.narrow(0, 0, m).float().contiguous();
    const deltas = newE
      .narrow(0, 0, m)
      .sub(oldE.narrow(0, 0, m))
      .float()
      .contiguous();
    let sigma = opts.sigma;
    if (sigma === undefined) {
      // the median distance from a fitted point to its 10th nearest neighbour (over up to 512
      // points): local enough to follow drift that differs between regions of the space
      const k = Math.min(m, 512);
      const s = centres.narrow(0, 0, k);
      const d2 = s.square().sum(1, true).add(s.square().sum(1).unsqueeze(0)).sub(s.matmul(s.T).mul(2)).clamp(0);
      const nn = Math.min(10, k - 1);
      const kth = d2
        .topk(nn + 1, 1, false)
        .values.select(1, nn)
        .sqrt()
        .toArray()
        .sort((a, b) => a - b);
      sigma = kth[Math.floor(kth.length / 2)] ?? 1;
      if (!(sigma > 0)) sigma = 1;
    }
    return { centres, deltas, sigma: ones([1]).mul(sigma) };
  });
  return new Fixed("kernel", owned(tensors), { centres: m }, applyKernel);
}

export function fitProcrustes(oldE: Tensor, newE: Tensor, opts: { centre?: boolean } = {}): Compensator {
  const centre = opts.centre ?? false;
  const tensors = tidy(() => {
    const x = newE.to("float64");
    const y = oldE.to("float64");
    const muX = x.mean(0);
    const muY = y.mean(0);
    const xc = centre ? x.sub(muX) : x;
    const yc = centre ? y.sub(muY) : y;
    const { U, Vh } = svd(xc.T.matmul(yc));
    const out: Record<string, Tensor> = { W: U.matmul(Vh).float() };
    if (centre) {
      out.mu_new = muX.float();
      out.b = muY.float();
    }
    return out;
  });
  return new Fixed("procrustes", owned(tensors), { centre }, applyMap);
}

export function fitAffine(oldE: Tensor, newE: Tensor, opts: { ridge?: number; rank?: number } = {}): Compensator {
  // the ridge penalty is relative to the mean eigenvalue of the centred Gram matrix
  const ridge = opts.ridge ?? 1e-4;
  const tensors = tidy(() => {
    const x = newE.to("float64");
    const y = oldE.to("float64");
    const muX = x.mean(0);
    const muY = y.mean(0);
    const xc = x.sub(muX);
    const yc = y.sub(muY);
    const d = x.size(1);
    const g = xc.T.matmul(xc);
    const meanEig = xc.square().sum().item() / d || 1; // trace(G) / d
    const gram = g.add(eye(d, { dtype: "float64" }).mul(ridge * meanEig));
    let W = solve(gram, xc.T.matmul(yc));
    if (opts.rank !== undefined && opts.rank < d && y.size(1) !== d)
      throw new Error(
        `affine: a low-rank change (rank ${opts.rank}) needs both spaces of one dimension, got ${d} → ${y.size(1)}`,
      );
    if (opts.rank !== undefined && opts.rank < d) {
      // keep the identity and the `rank` strongest directions of the change W − I
      const I = eye(d, { dtype: "float64" });
      const { U, S, Vh } = svd(W.sub(I));
      const r = opts.rank;
      W = I.add(
        U.narrow(1, 0, r)
          .mul(S.narrow(0, 0, r))
          .matmul(Vh.narrow(0, 0, r)),
      );
    }
    // old ≈ (new − μx)·W + μy
    return { W: W.float(), mu_new: muX.float(), b: muY.float() };
  });
  return new Fixed("affine", owned(tensors), { ridge, rank: opts.rank ?? null }, applyMap);
}

export function fitMlp(
  oldE: Tensor,
  newE: Tensor,
  opts: { hidden?: number; epochs?: number; lr?: number; batchSize?: number; seed?: number } = {},
): Compensator {
  const d = newE.size(1);
  const dOut = oldE.size(1);
  // between dimensions the skip connection is the ridge affine map, and the MLP learns what it misses
  const skip = d === dOut ? null : fitAffine(oldE, newE);
  const skipT = skip?.state().tensors;
  const hidden = opts.hidden ?? Math.max(64, Math.min(1024, 2 * d));
  const epochs = opts.epochs ?? 200;
  const batch = opts.batchSize ?? 256;
  const seed = opts.seed ?? 0;
  const w1 = keep(
    randn([hidden, d], { seed })
      .mul(1 / Math.sqrt(d))
      .requiresGrad_(),
  );
  const b1 = keep(zeros([hidden], { requiresGrad: true }));
  const w2 = keep(zeros([dOut, hidden], { requiresGrad: true }));
  const b2 = keep(zeros([dOut], { requiresGrad: true }));
  const fixed: Record<string, Tensor> = skipT
    ? { A: skipT.W as Tensor, A_mu: skipT.mu_new as Tensor, A_b: skipT.b as Tensor }
    : {};
  const opt = new AdamW(
    [
      { params: [w1, w2], weightDecay: 1e-4 },
      { params: [b1, b2], weightDecay: 0 },
    ],
    { lr: opts.lr ?? 3e-3 },
  );
  const x = newE.float();
  const y = oldE.float();
  const n = x.size(0);
  for (let e = 0; e < epochs; e++) {
    for (let s = 0; s < n; s += batch) {
      const len = Math.min(batch, n - s);
      opt.zeroGrad();
      tidy(() => {
        const xb = x.narrow(0, s, len);
        const pred = applyMlp(xb, { w1, b1, w2, b2, ...fixed });
        pred
          .sub(y.narrow(0, s, len))
          .square()
          .sum(1)
          .mean()
          .backward();
      });
      opt.step();
    }
  }
  const tensors: Record<string, Tensor> = noGrad(() => ({
    w1: w1.detach(),
    b1: b1.detach(),
    w2: w2.detach(),
    b2: b2.detach(),
  }));
  for (const t of [w1, b1, w2, b2]) t.dispose();
  if (skipT) for (const [k, v] of Object.entries(fixed)) tensors[k] = v.clone();
  skip?.dispose();
  return new Fixed("mlp", owned(tensors), { hidden, epochs }, applyMlp);
}

/** k-means (k-means++ start, Lloyd iterations) of the rows of `x` [N, D]: centres [k, D] and each row's cluster. */
function kmeans(x: Tensor, k: number, seed: number, iterations = 25): { centres: Tensor; assign: number[] } {
  const n = x.size(0);
  const rng = new Rng(seed);
  const sqDist = (c: Tensor) =>
    tidy(() => x.square().sum(1, true).add(c.square().sum(1).unsqueeze(0)).sub(x.matmul(c.T).mul(2)).clamp(0));
  // k-means++: each next centre drawn with probability ∝ its squared distance to the nearest chosen
  const chosen = [rng.int(n)];
  while (chosen.length < k) {
    const d = tidy(() =>
      sqDist(x.indexSelect(0, tensor(chosen, { dtype: "int64" })))
        .amin(1)
        .toArray(),
    );
    const total = d.reduce((a: number, b: number) => a + b, 0);
    let r = rng.next() * total;
    let pick = 0;
    for (; pick < n - 1 && r > (d[pick] as number); pick++) r -= d[pick] as number;
    chosen.push(pick);
  }
  let centres = keep(tidy(() => x.indexSelect(0, tensor(chosen, { dtype: "int64" }))));
  let assign: number[] = [];
  for (let it = 0; it < iterations; it++) {
    const next = tidy(() => sqDist(centres).argmin(1).toArray());
    const moved = next.some((a, i) => a !== assign[i]);
    assign = next;
    const onehot = new Float64Array(n * k);
    const counts = new Array(k).fill(0);
    assign.forEach((a, i) => {
      onehot[i * k + a] = 1;
      counts[a]++;
    });
    const updated = keep(
      tidy(() => {
        const sums = tensor(onehot, { shape: [n, k], dtype: "float64" }).T.matmul(x.to("float64"));
        // an empty cluster keeps its centre
        const keepOld = tensor(
          counts.map((c) => (c ? 0 : 1)),
          { dtype: "float64" },
        ).unsqueeze(1);
        const denom = tensor(
          counts.map((c) => Math.max(c, 1)),
          { dtype: "float64" },
        ).unsqueeze(1);
        return sums.div(denom).add(centres.to("float64").mul(keepOld)).to(x.dtype);
      }),
    );
    centres.dispose();
    centres = updated;
    if (!moved) break;
  }
  return { centres, assign };
}

export function fitLocal(
  oldE: Tensor,
  newE: Tensor,
  opts: { clusters?: number; ridge?: number; seed?: number } = {},
): Compensator {
  const n = newE.size(0);
  const d = newE.size(1);
  const k = Math.max(1, Math.min(opts.clusters ?? Math.round(n / 250), 16, Math.floor(n / 2)));
  const strength = opts.ridge ?? 1;
  const x = tidy(() => newE.to("float64"));
  const y = tidy(() => oldE.to("float64"));
  const global = fitAffine(oldE, newE);
  const { centres, assign } = kmeans(x, Math.max(1, k), opts.seed ?? 0);
  const tensors = tidy(() => {
    const Wg = (global.state().tensors.W as Tensor).to("float64");
    const Ws: Tensor[] = [];
    const mus: Tensor[] = [];
    const bs: Tensor[] = [];
    let spread = 0;
    for (let j = 0; j < centres.size(0); j++) {
      const rows = assign.flatMap((a, i) => (a === j ? [i] : []));
      if (rows.length < 2) {
        // too few members to fit: the global map about the global means
        const g = global.state().tensors;
        Ws.push(Wg);
        mus.push((g.mu_new as Tensor).to("float64"));
        bs.push((g.b as Tensor).to("float64"));
        continue;
      }
      const idx = tensor(rows, { dtype: "int64" });
      const xj = x.indexSelect(0, idx);
      const yj = y.indexSelect(0, idx);
      const mx = xj.mean(0);
      const my = yj.mean(0);
      const xc = xj.sub(mx);
      const yc = yj.sub(my);
      const g = xc.T.matmul(xc);
      // ridge towards the global map: argmin ‖xc·W − yc‖² + λ‖W − Wg‖², λ the mean eigenvalue × strength
      const lambda = (xc.square().sum().item() / d || 1) * strength;
      Ws.push(solve(g.add(eye(d, { dtype: "float64" }).mul(lambda)), xc.T.matmul(yc).add(Wg.mul(lambda))));
      mus.push(mx);
      bs.push(my);
      spread += xc.square().sum().item();
    }
    const sigma2 = spread / n || 1;
    return {
      centres: centres.float(),
      mu: stack(mus).float(),
      W: stack(Ws).float(),
      b: stack(bs).float(),
      scale: ones([1]).mul(1 / (2 * sigma2)),
    };
  });
  for (const t of [x, y, centres]) t.dispose();
  global.dispose();
  return new Fixed("local", owned(tensors), { clusters: k, ridge: strength }, applyLocal);
}
