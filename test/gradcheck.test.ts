/** Every differentiable op: autograd's gradient against central finite differences in float64. */
import { describe, it } from "node:test";
import {
  attention,
  cat,
  cosineSimilarity,
  crossEntropy,
  dropout,
  embedding,
  layerNorm,
  linear,
  normalize,
  stack,
  type Tensor,
  tensor,
  where,
} from "../src/index.js";
import { type GradInput, gradcheck, randomArray } from "./helpers.js";

let seed = 1;
const input = (shape: number[], lo = -1, hi = 1): GradInput => ({
  shape,
  data: randomArray(
    shape.reduce((a, b) => a * b, 1),
    seed++,
    lo,
    hi,
  ),
});
const pos = (shape: number[]) => input(shape, 0.5, 2);

const unary: [string, (x: Tensor) => Tensor, GradInput][] = [
  ["neg", (x) => x.neg(), input([2, 3])],
  ["sqrt", (x) => x.sqrt(), pos([2, 3])],
  ["rsqrt", (x) => x.rsqrt(), pos([2, 3])],
  ["exp", (x) => x.exp(), input([2, 3])],
  ["log", (x) => x.log(), pos([2, 3])],
  ["abs", (x) => x.abs(), pos([2, 3])],
  ["sigmoid", (x) => x.sigmoid(), input([2, 3])],
  ["tanh", (x) => x.tanh(), input([2, 3])],
  ["silu", (x) => x.silu(), input([2, 3])],
  ["gelu", (x) => x.gelu(), input([2, 3])],
  ["gelu tanh", (x) => x.gelu("tanh"), input([2, 3])],
  ["cos", (x) => x.cos(), input([2, 3])],
  ["sin", (x) => x.sin(), input([2, 3])],
  ["pow scalar", (x) => x.pow(3), input([2, 3])],
  ["scalar pow", (x) => x.mul(0).add(2).pow(x), input([2, 3])],
  ["clamp", (x) => x.clamp(-0.5, 0.5), input([3, 3])],
  ["add scalar", (x) => x.add(2), input([3])],
  ["scalar div", (x) => x.reciprocal().mul(3), pos([3])],
  ["sum dims keepdim", (x) => x.sum(1, true), input([2, 3])],
  ["sum all", (x) => x.sum(), input([2, 3])],
  ["mean", (x) => x.mean([0, 2]), input([2, 3, 2])],
  ["amax", (x) => x.amax(1), input([2, 3])],
  ["norm", (x) => x.norm(2, 1), input([2, 3])],
  ["logsumexp", (x) => x.logsumexp(1), input([2, 3])],
  ["softmax", (x) => x.softmax(-1), input([2, 4])],
  ["logSoftmax", (x) => x.logSoftmax(0), input([3, 2])],
  ["normalize", (x) => normalize(x), input([3, 4])],
  ["dropout eval", (x) => dropout(x, 0.3, false), input([4])],
  ["reshape+transpose", (x) => x.reshape(3, 2).transpose(0, 1).mul(x.reshape(2, 3)), input([6])],
  ["permute", (x) => x.permute(2, 0, 1).contiguous(), input([2, 3, 2])],
  ["expand", (x) => x.expand(3, 2, 4), input([2, 1])],
  [
    "narrow+select+slice",
    (x) =>
      x
        .narrow(0, 1, 2)
        .select(1, 2)
        .add(x.slice(1, 0, 2).sum()),
    input([3, 3]),
  ],
  ["split+chunk", (x) => x.split(2, 1)[1]!.mul(x.chunk(2, 0)[0]!.sum()), input([2, 4])],
  ["squeeze/unsqueeze/flatten", (x) => x.unsqueeze(0).squeeze(0).flatten(), input([2, 2])],
  ["topk values", (x) => x.topk(2, 1).values, input([2, 4])],
  ["sort values", (x) => x.sort(1).values, input([2, 4])],
  ["indexSelect", (x) => x.indexSelect(0, tensor([2, 0, 2], { dtype: "int64" })), input([3, 2])],
  [
    "gather",
    (x) =>
      x.gather(
        1,
        tensor(
          [
            [1, 0],
            [2, 2],
          ],
          { dtype: "int64" },
        ),
      ),
    input([2, 3]),
  ],
  [
    "maskedFill",
    (x) =>
      x.maskedFill(
        tensor(
          [
            [true, false],
            [false, true],
          ],
          { dtype: "bool" },
        ),
        0.5,
      ),
    input([2, 2]),
  ],
  ["embedding", (w) => embedding(w, tensor([[1, 3, 1]], { dtype: "int64" })), input([4, 3])],
  [
    "crossEntropy",
    (x) => crossEntropy(x, tensor([1, 0, 3], { dtype: "int64" }), { labelSmoothing: 0.1 }).reshape(1),
    input([3, 4]),
  ],
];

const binary: [string, (a: Tensor, b: Tensor) => Tensor, GradInput, GradInput][] = [
  ["add broadcast", (a, b) => a.add(b), input([2, 3]), input([3])],
  ["sub", (a, b) => a.sub(b), input([2, 3]), input([2, 1])],
  ["mul", (a, b) => a.mul(b), input([2, 3]), input([2, 3])],
  ["div", (a, b) => a.div(b), input([2, 3]), pos([3])],
  ["pow", (a, b) => a.pow(b), pos([2, 2]), input([2, 2])],
  ["maximum", (a, b) => a.maximum(b), input([5]), input([5])],
  ["minimum", (a, b) => a.minimum(b), input([5]), input([5])],
  ["matmul", (a, b) => a.matmul(b), input([2, 3]), input([3, 4])],
  ["matmul batched", (a, b) => a.matmul(b), input([2, 2, 3]), input([2, 3, 2])],
  ["outer", (a, b) => a.outer(b), input([3]), input([2])],
  ["cosineSimilarity", (a, b) => cosineSimilarity(a, b, 1), input([3, 4]), input([3, 4])],
  ["cat", (a, b) => cat([a, b], 1), input([2, 2]), input([2, 3])],
  ["stack", (a, b) => stack([a, b], 0), input([2, 2]), input([2, 2])],
  ["where", (a, b) => where(a.gt(b), a, b.mul(2)), input([6]), input([6])],
];

describe("gradients match finite differences (float64)", () => {
  for (const [name, f, x] of unary) it(name, () => gradcheck(name, ([a]) => f(a!), [x]));
  for (const [name, f, a, b] of binary) it(name, () => gradcheck(name, ([x, y]) => f(x!, y!), [a, b]));
  it("linear with bias", () =>
    gradcheck("linear", ([x, w, b]) => linear(x!, w!, b!), [input([2, 3]), input([4, 3]), input([4])]));
  it("layerNorm with weight and bias", () =>
    gradcheck("layerNorm", ([x, w, b]) => layerNorm(x!, [4], w!, b!), [input([2, 4]), input([4]), input([4])]));
  it("attention with a key-padding mask", () => {
    const mask = () => tensor([[[[true, true, false]]], [[[true, true, true]]]], { dtype: "bool" });
    gradcheck("attention", ([q, k, v]) => attention(q!, k!, v!, { mask: mask() }), [
      input([2, 1, 2, 4]),
      input([2, 1, 3, 4]),
      input([2, 1, 3, 4]),
    ]);
  });
  it("causal attention", () =>
    gradcheck("attention causal", ([q, k, v]) => attention(q!, k!, v!, { causal: true }), [
      input([1, 2, 3, 2]),
      input([1, 2, 3, 2]),
      input([1, 2, 3, 2]),
    ]));
});
