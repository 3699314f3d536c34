/** Losses for contrastive fine-tuning: InfoNCE with in-batch and hard negatives, and embedding distillation. */
import { arange, crossEntropy, type Tensor } from "../tensor/index.js";

/**
 * InfoNCE of each query against every document of the batch. `docs` holds, for query i, its
 * positive at row i·(1+k) followed by its k hard negatives; the other queries' documents act as
 * in-batch negatives. Logits are `scale · q·dᵀ` (embeddings are normalised, so this is cosine).
 * `bidirectional` adds the document→query term over the positives.
 */
export function infoNCE(
  queries: Tensor,
  docs: Tensor,
  opts: { scale: number | Tensor; bidirectional?: boolean },
): Tensor {
  const n = queries.size(0);
  const m = docs.size(0);
  if (m % n !== 0) throw new RangeError(`infoNCE: ${m} documents for ${n} queries (expected n·(1+k))`);
  const group = m / n;
  const logits = queries.matmul(docs.T).mul(opts.scale);
  const labels = arange(n, undefined, 1, { device: queries.device }).mul(group);
  const loss = crossEntropy(logits, labels);
  if (!opts.bidirectional) return loss;
  const positives = docs.indexSelect(0, labels);
  const back = crossEntropy(
    positives.matmul(queries.T).mul(opts.scale),
    arange(n, undefined, 1, { device: queries.device }),
  );
  return loss.add(back).div(2);
}

/**
 * torch.nn.functional.cosine_embedding_loss with target 1: mean(1 − cos(student, teacher)), with
 * the same 1e-12 guard on the squared norms.
 */
export function cosineDistillation(student: Tensor, teacher: Tensor): Tensor {
  const dot = student.mul(teacher).sum(-1);
  const n1 = student.square().sum(-1).add(1e-12);
  const n2 = teacher.square().sum(-1).add(1e-12);
  return dot.div(n1.mul(n2).sqrt()).neg().add(1).mean();
}
