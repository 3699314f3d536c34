// Tensor operations: creation, metadata, shape, elementwise and reduction math, and the
// neural-network functions the models need. Each function takes tensor handles and plain
// values and returns new handles; broadcasting and type promotion are torch's.
#include "common.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

namespace qdc {
namespace {

using Info = Napi::CallbackInfo;
using V = Napi::Value;

at::TensorOptions Options(const Info& info, size_t dtype_i, size_t device_i) {
  return at::TensorOptions()
      .dtype(OptDType(info, dtype_i).value_or(at::kFloat))
      .device(OptDevice(info, device_i).value_or(at::Device(at::kCPU)));
}

// ---- creation ----

V Zeros(const Info& info) { return Wrap(info.Env(), at::zeros(IntList(info, 0), Options(info, 1, 2))); }
V Ones(const Info& info) { return Wrap(info.Env(), at::ones(IntList(info, 0), Options(info, 1, 2))); }
V Empty(const Info& info) { return Wrap(info.Env(), at::empty(IntList(info, 0), Options(info, 1, 2))); }
V Full(const Info& info) { return Wrap(info.Env(), at::full(IntList(info, 0), Scalar(info, 1), Options(info, 2, 3))); }
V Arange(const Info& info) {
  return Wrap(info.Env(), at::arange(Scalar(info, 0), Scalar(info, 1), Scalar(info, 2), Options(info, 3, 4)));
}
V Eye(const Info& info) { return Wrap(info.Env(), at::eye(Int(info, 0), Options(info, 1, 2))); }

// randn/rand/randint(shape, dtype, device, seed?): with a seed, the numbers come from a private
// CPU generator (the same values on every device); without one, from the device's default generator.
template <int Kind>
V Random(const Info& info) {
  auto shape = IntList(info, 0);
  auto opts = Options(info, 1, 2);
  auto seed = OptInt(info, 3);
  auto draw = [&](const at::TensorOptions& o, c10::optional<at::Generator> gen) {
    if constexpr (Kind == 0) return at::randn(shape, gen, o);
    else return at::rand(shape, gen, o);
  };
  if (!seed) return Wrap(info.Env(), draw(opts, c10::nullopt));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(*seed));
  at::Tensor cpu = draw(opts.device(at::kCPU), gen);
  return Wrap(info.Env(), cpu.to(opts.device()));
}

V RandInt(const Info& info) {  // (low, high, shape, dtype, device, seed?)
  int64_t low = Int(info, 0), high = Int(info, 1);
  auto shape = IntList(info, 2);
  auto opts = at::TensorOptions().dtype(OptDType(info, 3).value_or(at::kLong)).device(OptDevice(info, 4).value_or(at::kCPU));
  auto seed = OptInt(info, 5);
  if (!seed) return Wrap(info.Env(), at::randint(low, high, shape, opts));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(*seed));
  return Wrap(info.Env(), at::randint(low, high, shape, gen, opts.device(at::kCPU)).to(opts.device()));
}

V RandPerm(const Info& info) {  // (n, seed?)
  int64_t n = Int(info, 0);
  auto seed = OptInt(info, 1);
  if (!seed) return Wrap(info.Env(), at::randperm(n, at::kLong));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(*seed));
  return Wrap(info.Env(), at::randperm(n, gen, at::kLong));
}

// ---- metadata and conversion ----

V Shape(const Info& info) {
  auto sizes = Tensor(info, 0).sizes();
  Napi::Array a = Napi::Array::New(info.Env(), sizes.size());
  for (size_t i = 0; i < sizes.size(); i++) a.Set(static_cast<uint32_t>(i), static_cast<double>(sizes[i]));
  return a;
}
V DTypeOf(const Info& info) { return Napi::Number::New(info.Env(), static_cast<int>(Tensor(info, 0).scalar_type())); }
V DeviceOf(const Info& info) { return Napi::String::New(info.Env(), Tensor(info, 0).device().str()); }
V IsContiguous(const Info& info) { return Napi::Boolean::New(info.Env(), Tensor(info, 0).is_contiguous()); }
// autograd's version counter: bumped by every in-place write (an optimiser step), so a cache of
// values derived from a tensor knows when they went stale
V WriteVersion(const Info& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(Tensor(info, 0)._version()));
}

V Item(const Info& info) {
  at::Tensor& t = Tensor(info, 0);
  if (t.numel() != 1) throw std::invalid_argument("item(): tensor has " + std::to_string(t.numel()) + " elements, expected 1");
  if (t.scalar_type() == at::kBool) return Napi::Boolean::New(info.Env(), t.item<bool>());
  return Napi::Number::New(info.Env(), t.item<double>());
}

V To(const Info& info) {  // (t, device?, dtype?, copy)
  at::Tensor& t = Tensor(info, 0);
  auto dev = OptDevice(info, 1).value_or(t.device());
  auto dt = OptDType(info, 2).value_or(t.scalar_type());
  bool copy = info.Length() > 3 && info[3].IsBoolean() && info[3].As<Napi::Boolean>().Value();
  return Wrap(info.Env(), t.to(dev, dt, /*non_blocking=*/false, copy));
}
V Contiguous(const Info& info) { return Wrap(info.Env(), Tensor(info, 0).contiguous()); }
V Clone(const Info& info) { return Wrap(info.Env(), Tensor(info, 0).clone()); }
V Detach(const Info& info) { return Wrap(info.Env(), Tensor(info, 0).detach()); }

// ---- shape ----

V Reshape(const Info& info) { return Wrap(info.Env(), Tensor(info, 0).reshape(IntList(info, 1))); }
V View(const Info& info) { return Wrap(info.Env(), Tensor(info, 0).view(IntList(info, 1))); }
V Transpose(const Info& info) { return Wrap(info.Env(), Tensor(info, 0).transpose(Int(info, 1), Int(info, 2))); }
V Permute(const Info& info) { return Wrap(info.Env(), Tensor(info, 0).permute(IntList(info, 1))); }
V Squeeze(const Info& info) {
  auto dim = OptInt(info, 1);
  return Wrap(info.Env(), dim ? Tensor(info, 0).squeeze(*dim) : Tensor(info, 0).squeeze());
}
V Unsqueeze(const Info& info) { return Wrap(info.Env(), Tensor(info, 0).unsqueeze(Int(info, 1))); }
V Expand(const Info& info) { return Wrap(info.Env(), Tensor(info, 0).expand(IntList(info, 1))); }
V Narrow(const Info& info) { return Wrap(info.Env(), Tensor(info, 0).narrow(Int(info, 1), Int(info, 2), Int(info, 3))); }
V Slice(const Info& info) {  // (t, dim, start?, end?, step)
  return Wrap(info.Env(), Tensor(info, 0).slice(Int(info, 1), OptInt(info, 2), OptInt(info, 3), OptInt(info, 4).value_or(1)));
}
V Select(const Info& info) { return Wrap(info.Env(), Tensor(info, 0).select(Int(info, 1), Int(info, 2))); }
V Flatten(const Info& info) { return Wrap(info.Env(), Tensor(info, 0).flatten(Int(info, 1), Int(info, 2))); }
V Cat(const Info& info) { return Wrap(info.Env(), at::cat(TensorList(info, 0), Int(info, 1))); }
V Stack(const Info& info) { return Wrap(info.Env(), at::stack(TensorList(info, 0), Int(info, 1))); }
V Split(const Info& info) {  // (t, sizes[] | size, dim)
  at::Tensor& t = Tensor(info, 0);
  int64_t dim = Int(info, 2);
  if (info[1].IsArray()) return WrapList(info.Env(), t.split_with_sizes(IntList(info, 1), dim));
  return WrapList(info.Env(), t.split(Int(info, 1), dim));
}
V Chunk(const Info& info) { return WrapList(info.Env(), Tensor(info, 0).chunk(Int(info, 1), Int(info, 2))); }
V IndexSelect(const Info& info) { return Wrap(info.Env(), at::index_select(Tensor(info, 0), Int(info, 1), Tensor(info, 2))); }
V Gather(const Info& info) { return Wrap(info.Env(), at::gather(Tensor(info, 0), Int(info, 1), Tensor(info, 2))); }
// Tensor ids are numbers too, so functions that take "tensor or scalar" get a flags argument:
// bit 0 = the first such operand is a scalar, bit 1 = the second one is.
int64_t ScalarFlags(const Info& info, size_t i) { return OptInt(info, i).value_or(0); }

V MaskedFill(const Info& info) {  // (t, mask, value, flags)
  if (ScalarFlags(info, 3) & 1) return Wrap(info.Env(), at::masked_fill(Tensor(info, 0), Tensor(info, 1), Scalar(info, 2)));
  return Wrap(info.Env(), at::masked_fill(Tensor(info, 0), Tensor(info, 1), Tensor(info, 2)));
}
V Where(const Info& info) {  // (cond, a, b, flags)
  const at::Tensor& c = Tensor(info, 0);
  int64_t flags = ScalarFlags(info, 3);
  bool sa = flags & 1, sb = flags & 2;
  if (sa && sb) return Wrap(info.Env(), at::where(c, Scalar(info, 1), Scalar(info, 2)));
  if (sa) return Wrap(info.Env(), at::where(c, Scalar(info, 1), Tensor(info, 2)));
  if (sb) return Wrap(info.Env(), at::where(c, Tensor(info, 1), Scalar(info, 2)));
  return Wrap(info.Env(), at::where(c, Tensor(info, 1), Tensor(info, 2)));
}

// ---- elementwise ----

enum Unary {
  kNeg, kSqrt, kRsqrt, kExp, kLog, kAbs, kSigmoid, kTanh, kSilu, kRelu, kGelu, kGeluTanh, kCos, kSin,
  kReciprocal, kSquare, kFloor, kCeil, kRound, kSign, kLogicalNot, kIsNan, kLog1p, kErf, kUnaryCount
};
const char* kUnaryNames[] = {"neg", "sqrt", "rsqrt", "exp", "log", "abs", "sigmoid", "tanh", "silu", "relu",
                             "gelu", "gelu_tanh", "cos", "sin", "reciprocal", "square", "floor", "ceil",
                             "round", "sign", "logical_not", "isnan", "log1p", "erf"};
static_assert(sizeof(kUnaryNames) / sizeof(kUnaryNames[0]) == kUnaryCount, "unary names");

V UnaryOp(const Info& info) {
  const at::Tensor& t = Tensor(info, 1);
  at::Tensor r;
  switch (Int(info, 0)) {
    case kNeg: r = at::neg(t); break;
    case kSqrt: r = at::sqrt(t); break;
    case kRsqrt: r = at::rsqrt(t); break;
    case kExp: r = at::exp(t); break;
    case kLog: r = at::log(t); break;
    case kAbs: r = at::abs(t); break;
    case kSigmoid: r = at::sigmoid(t); break;
    case kTanh: r = at::tanh(t); break;
    case kSilu: r = at::silu(t); break;
    case kRelu: r = at::relu(t); break;
    case kGelu: r = at::gelu(t, "none"); break;
    case kGeluTanh: r = at::gelu(t, "tanh"); break;
    case kCos: r = at::cos(t); break;
    case kSin: r = at::sin(t); break;
    case kReciprocal: r = at::reciprocal(t); break;
    case kSquare: r = at::square(t); break;
    case kFloor: r = at::floor(t); break;
    case kCeil: r = at::ceil(t); break;
    case kRound: r = at::round(t); break;
    case kSign: r = at::sign(t); break;
    case kLogicalNot: r = at::logical_not(t); break;
    case kIsNan: r = at::isnan(t); break;
    case kLog1p: r = at::log1p(t); break;
    case kErf: r = at::erf(t); break;
    default: throw std::invalid_argument("unknown unary op code");
  }
  return Wrap(info.Env(), r);
}

enum Binary {
  kAdd, kSub, kMul, kDiv, kPow, kMaximum, kMinimum, kEq, kNe, kLt, kLe, kGt, kGe, kLogicalAnd, kLogicalOr,
  kRemainder, kBinaryCount
};
const char* kBinaryNames[] = {"add", "sub", "mul", "div", "pow", "maximum", "minimum", "eq", "ne", "lt",
                              "le", "gt", "ge", "logical_and", "logical_or", "remainder"};
static_assert(sizeof(kBinaryNames) / sizeof(kBinaryNames[0]) == kBinaryCount, "binary names");

at::Tensor BinaryTT(int64_t op, const at::Tensor& a, const at::Tensor& b) {
  switch (op) {
    case kAdd: return at::add(a, b);
    case kSub: return at::sub(a, b);
    case kMul: return at::mul(a, b);
    case kDiv: return at::div(a, b);
    case kPow: return at::pow(a, b);
    case kMaximum: return at::maximum(a, b);
    case kMinimum: return at::minimum(a, b);
    case kEq: return at::eq(a, b);
    case kNe: return at::ne(a, b);
    case kLt: return at::lt(a, b);
    case kLe: return at::le(a, b);
    case kGt: return at::gt(a, b);
    case kGe: return at::ge(a, b);
    case kLogicalAnd: return at::logical_and(a, b);
    case kLogicalOr: return at::logical_or(a, b);
    case kRemainder: return at::remainder(a, b);
    default: throw std::invalid_argument("unknown binary op code");
  }
}

at::Tensor BinaryTS(int64_t op, const at::Tensor& a, const at::Scalar& s) {
  switch (op) {
    case kAdd: return at::add(a, s);
    case kSub: return at::sub(a, s);
    case kMul: return at::mul(a, s);
    case kDiv: return at::div(a, s);
    case kPow: return at::pow(a, s);
    case kMaximum: return at::clamp_min(a, s);
    case kMinimum: return at::clamp_max(a, s);
    case kEq: return at::eq(a, s);
    case kNe: return at::ne(a, s);
    case kLt: return at::lt(a, s);
    case kLe: return at::le(a, s);
    case kGt: return at::gt(a, s);
    case kGe: return at::ge(a, s);
    case kRemainder: return at::remainder(a, s);
    default: return BinaryTT(op, a, at::scalar_tensor(s, a.options().requires_grad(false)));
  }
}

// scalar (op) tensor
at::Tensor BinaryST(int64_t op, const at::Scalar& s, const at::Tensor& b) {
  switch (op) {
    case kAdd: return at::add(b, s);
    case kMul: return at::mul(b, s);
    case kSub: return at::rsub(b, s);
    case kDiv: return at::mul(at::reciprocal(b), s);
    case kPow: return at::pow(s, b);
    case kMaximum: return at::clamp_min(b, s);
    case kMinimum: return at::clamp_max(b, s);
    case kEq: return at::eq(b, s);
    case kNe: return at::ne(b, s);
    case kLt: return at::gt(b, s);
    case kLe: return at::ge(b, s);
    case kGt: return at::lt(b, s);
    case kGe: return at::le(b, s);
    default: return BinaryTT(op, at::scalar_tensor(s, b.options().requires_grad(false)), b);
  }
}

V BinaryOp(const Info& info) {  // (code, a, b, flags)
  int64_t op = Int(info, 0);
  int64_t flags = ScalarFlags(info, 3);
  bool sa = flags & 1, sb = flags & 2;
  if (sa && sb) throw std::invalid_argument("binary op: at least one operand must be a tensor");
  if (sb) return Wrap(info.Env(), BinaryTS(op, Tensor(info, 1), Scalar(info, 2)));
  if (sa) return Wrap(info.Env(), BinaryST(op, Scalar(info, 1), Tensor(info, 2)));
  return Wrap(info.Env(), BinaryTT(op, Tensor(info, 1), Tensor(info, 2)));
}

V Clamp(const Info& info) {
  c10::optional<at::Scalar> lo, hi;
  if (IsNumber(info, 1)) lo = Scalar(info, 1);
  if (IsNumber(info, 2)) hi = Scalar(info, 2);
  if (!lo && !hi) throw std::invalid_argument("clamp: give a minimum, a maximum or both");
  return Wrap(info.Env(), at::clamp(Tensor(info, 0), lo, hi));
}

V Matmul(const Info& info) { return Wrap(info.Env(), at::matmul(Tensor(info, 0), Tensor(info, 1))); }
V Outer(const Info& info) { return Wrap(info.Env(), at::outer(Tensor(info, 0), Tensor(info, 1))); }
V Linear(const Info& info) { return Wrap(info.Env(), at::linear(Tensor(info, 0), Tensor(info, 1), OptTensor(info, 2))); }

// ---- reductions ----

enum Reduce { kSum, kMean, kAmax, kAmin, kProd, kLogSumExp, kAll, kAny, kReduceCount };
const char* kReduceNames[] = {"sum", "mean", "amax", "amin", "prod", "logsumexp", "all", "any"};
static_assert(sizeof(kReduceNames) / sizeof(kReduceNames[0]) == kReduceCount, "reduce names");

V ReduceOp(const Info& info) {  // (code, t, dims?, keepdim, dtype?)
  int64_t op = Int(info, 0);
  const at::Tensor& t = Tensor(info, 1);
  auto dims = OptIntList(info, 2);
  bool keep = info.Length() > 3 && info[3].IsBoolean() && info[3].As<Napi::Boolean>().Value();
  auto dt = OptDType(info, 4);
  std::vector<int64_t> all;
  if (!dims) {
    for (int64_t d = 0; d < t.dim(); d++) all.push_back(d);
  }
  at::IntArrayRef ds = dims ? at::IntArrayRef(*dims) : at::IntArrayRef(all);
  at::Tensor r;
  switch (op) {
    case kSum: r = at::sum(t, ds, keep, dt); break;
    case kMean: r = at::mean(t, ds, keep, dt); break;
    case kAmax: r = at::amax(t, ds, keep); break;
    case kAmin: r = at::amin(t, ds, keep); break;
    case kLogSumExp: r = at::logsumexp(t, ds, keep); break;
    // prod/all/any reduce one dim at a time (1.13 has no multi-dim overloads), last dim first so
    // the remaining dim numbers stay valid without keepdim.
    case kProd: case kAll: case kAny: {
      std::vector<int64_t> desc(ds.begin(), ds.end());
      for (auto& d : desc) d = c10::maybe_wrap_dim(d, t.dim());
      std::sort(desc.rbegin(), desc.rend());
      r = op == kProd ? (dt ? t.to(*dt) : t.clone()) : t.to(at::kBool);
      for (int64_t d : desc) r = op == kProd ? at::prod(r, d, keep) : op == kAll ? at::all(r, d, keep) : at::any(r, d, keep);
      break;
    }
    default: throw std::invalid_argument("unknown reduction code");
  }
  return Wrap(info.Env(), r);
}

V MaxDim(const Info& info) { return WrapPair(info.Env(), at::max(Tensor(info, 0), Int(info, 1), Bool(info, 2))); }
V MinDim(const Info& info) { return WrapPair(info.Env(), at::min(Tensor(info, 0), Int(info, 1), Bool(info, 2))); }
V Argmax(const Info& info) { return Wrap(info.Env(), at::argmax(Tensor(info, 0), OptInt(info, 1), Bool(info, 2))); }
V Argmin(const Info& info) { return Wrap(info.Env(), at::argmin(Tensor(info, 0), OptInt(info, 1), Bool(info, 2))); }
V Norm(const Info& info) {  // (t, p, dims?, keepdim)
  const at::Tensor& t = Tensor(info, 0);
  auto dims = OptIntList(info, 2);
  at::Scalar p(Double(info, 1));
  if (!dims) return Wrap(info.Env(), at::norm(t, p));
  return Wrap(info.Env(), at::norm(t, p, *dims, Bool(info, 3)));
}
V Topk(const Info& info) {  // (t, k, dim, largest, sorted)
  return WrapPair(info.Env(), at::topk(Tensor(info, 0), Int(info, 1), Int(info, 2), Bool(info, 3), Bool(info, 4)));
}
V Sort(const Info& info) {  // (t, dim, descending, stable)
  return WrapPair(info.Env(), at::sort(Tensor(info, 0), Bool(info, 3), Int(info, 1), Bool(info, 2)));
}

// ---- neural-network functions ----

V Softmax(const Info& info) { return Wrap(info.Env(), at::softmax(Tensor(info, 0), Int(info, 1), OptDType(info, 2))); }
V LogSoftmax(const Info& info) { return Wrap(info.Env(), at::log_softmax(Tensor(info, 0), Int(info, 1), OptDType(info, 2))); }
V LayerNorm(const Info& info) {  // (x, normalized_shape, weight?, bias?, eps)
  return Wrap(info.Env(), at::layer_norm(Tensor(info, 0), IntList(info, 1), OptTensor(info, 2), OptTensor(info, 3), Double(info, 4)));
}
V Dropout(const Info& info) { return Wrap(info.Env(), at::dropout(Tensor(info, 0), Double(info, 1), Bool(info, 2))); }
V Embedding(const Info& info) {  // (weight, indices, padding_idx?)
  return Wrap(info.Env(), at::embedding(Tensor(info, 0), Tensor(info, 1), OptInt(info, 2).value_or(-1)));
}
V CrossEntropy(const Info& info) {  // (logits, target, reduction 0 none|1 mean|2 sum, ignore_index, label_smoothing)
  int64_t red = Int(info, 2);
  if (red < 0 || red > 2) throw std::invalid_argument("cross_entropy: reduction must be none, mean or sum");
  return Wrap(info.Env(), at::cross_entropy_loss(Tensor(info, 0), Tensor(info, 1), c10::nullopt, red, Int(info, 3), Double(info, 4)));
}
V CosineSimilarity(const Info& info) {
  return Wrap(info.Env(), at::cosine_similarity(Tensor(info, 0), Tensor(info, 1), Int(info, 2), Double(info, 3)));
}
V Normalize(const Info& info) {  // (x, p, dim, eps): x / max(‖x‖_p, eps), as torch.nn.functional.normalize
  const at::Tensor& x = Tensor(info, 0);
  at::Tensor n = at::norm(x, at::Scalar(Double(info, 1)), {Int(info, 2)}, true).clamp_min(Double(info, 3));
  return Wrap(info.Env(), x / n.expand_as(x));
}

// Scaled dot-product attention over (..., L, E) queries and (..., S, E) keys/values. `mask` is
// boolean (true = attend) or additive float, broadcastable to (..., L, S). Torch 2.x runs its
// fused kernels (flash / memory-efficient / cuDNN where they apply); 1.13 runs the same maths.
V Attention(const Info& info) {  // (q, k, v, mask?, dropout_p, is_causal)
  const at::Tensor& q = Tensor(info, 0);
  const at::Tensor& k = Tensor(info, 1);
  const at::Tensor& v = Tensor(info, 2);
  auto mask = OptTensor(info, 3);
  double p = Double(info, 4);
  bool causal = Bool(info, 5);
  if (mask && causal) throw std::invalid_argument("attention: give either a mask or is_causal, not both");
#if TORCH_VERSION_MAJOR >= 2
  return Wrap(info.Env(), at::scaled_dot_product_attention(q, k, v, mask, p, causal));
#else
  double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  // scale whichever is smaller: the queries [.., L, E] or the scores [.., L, S]
  at::Tensor scores = k.size(-2) > q.size(-1) ? at::matmul(q * scale, k.transpose(-2, -1))
                                              : at::matmul(q, k.transpose(-2, -1)) * scale;
  // the scores are a fresh tensor that no backward needs, so masking can be in place
  const double ninf = -std::numeric_limits<double>::infinity();
  if (causal) {
    at::Tensor keep = at::ones({q.size(-2), k.size(-2)}, q.options().dtype(at::kBool)).tril();
    scores.masked_fill_(keep.logical_not(), ninf);
  } else if (mask) {
    if (mask->scalar_type() == at::kBool) {
      scores.masked_fill_(mask->logical_not(), ninf);
    } else {
      scores.add_(*mask);
    }
  }
  at::Tensor probs = at::softmax(scores, -1);
  if (p > 0) probs = at::dropout(probs, p, true);
  return Wrap(info.Env(), at::matmul(probs, v));
#endif
}

// ---- linear algebra ----

V Svd(const Info& info) {  // (t) → [U, S, Vh], reduced
  auto r = at::linalg_svd(Tensor(info, 0), /*full_matrices=*/false);
  return WrapList(info.Env(), {std::get<0>(r), std::get<1>(r), std::get<2>(r)});
}
V Solve(const Info& info) { return Wrap(info.Env(), at::linalg_solve(Tensor(info, 0), Tensor(info, 1))); }

// ---- in place (used by optimisers and weight loading; they do not record autograd history) ----

V CopyInto(const Info& info) {
  at::NoGradGuard guard;
  Tensor(info, 0).copy_(Tensor(info, 1));
  return info.Env().Undefined();
}
V FillInto(const Info& info) {
  at::NoGradGuard guard;
  Tensor(info, 0).fill_(Scalar(info, 1));
  return info.Env().Undefined();
}
V Equal(const Info& info) { return Napi::Boolean::New(info.Env(), at::equal(Tensor(info, 0), Tensor(info, 1))); }

Napi::Object Names(Napi::Env env, const char* const* names, size_t n) {
  Napi::Object o = Napi::Object::New(env);
  for (size_t i = 0; i < n; i++) o.Set(names[i], static_cast<double>(i));
  return o;
}

}  // namespace

void RegisterTensorOps(Napi::Env env, Napi::Object e) {
  e.Set("UNARY", Names(env, kUnaryNames, kUnaryCount));
  e.Set("BINARY", Names(env, kBinaryNames, kBinaryCount));
  e.Set("REDUCE", Names(env, kReduceNames, kReduceCount));
  Export<Zeros>(env, e, "zeros");
  Export<Ones>(env, e, "ones");
  Export<Empty>(env, e, "empty");
  Export<Full>(env, e, "full");
  Export<Arange>(env, e, "arange");
  Export<Eye>(env, e, "eye");
  Export<Random<0>>(env, e, "randn");
  Export<Random<1>>(env, e, "rand");
  Export<RandInt>(env, e, "randint");
  Export<RandPerm>(env, e, "randperm");
  Export<Shape>(env, e, "shape");
  Export<DTypeOf>(env, e, "dtype");
  Export<DeviceOf>(env, e, "device");
  Export<IsContiguous>(env, e, "isContiguous");
  Export<WriteVersion>(env, e, "writeVersion");
  Export<Item>(env, e, "item");
  Export<To>(env, e, "to");
  Export<Contiguous>(env, e, "contiguous");
  Export<Clone>(env, e, "clone");
  Export<Detach>(env, e, "detach");
  Export<Reshape>(env, e, "reshape");
  Export<View>(env, e, "view");
  Export<Transpose>(env, e, "transpose");
  Export<Permute>(env, e, "permute");
  Export<Squeeze>(env, e, "squeeze");
  Export<Unsqueeze>(env, e, "unsqueeze");
  Export<Expand>(env, e, "expand");
  Export<Narrow>(env, e, "narrow");
  Export<Slice>(env, e, "slice");
  Export<Select>(env, e, "select");
  Export<Flatten>(env, e, "flatten");
  Export<Cat>(env, e, "cat");
  Export<Stack>(env, e, "stack");
  Export<Split>(env, e, "split");
  Export<Chunk>(env, e, "chunk");
  Export<IndexSelect>(env, e, "indexSelect");
  Export<Gather>(env, e, "gather");
  Export<MaskedFill>(env, e, "maskedFill");
  Export<Where>(env, e, "where");
  Export<UnaryOp>(env, e, "unary");
  Export<BinaryOp>(env, e, "binary");
  Export<Clamp>(env, e, "clamp");
  Export<Matmul>(env, e, "matmul");
  Export<Outer>(env, e, "outer");
  Export<Linear>(env, e, "linear");
  Export<ReduceOp>(env, e, "reduce");
  Export<MaxDim>(env, e, "maxDim");
  Export<MinDim>(env, e, "minDim");
  Export<Argmax>(env, e, "argmax");
  Export<Argmin>(env, e, "argmin");
  Export<Norm>(env, e, "norm");
  Export<Topk>(env, e, "topk");
  Export<Sort>(env, e, "sort");
  Export<Softmax>(env, e, "softmax");
  Export<LogSoftmax>(env, e, "logSoftmax");
  Export<LayerNorm>(env, e, "layerNorm");
  Export<Dropout>(env, e, "dropout");
  Export<Embedding>(env, e, "embedding");
  Export<CrossEntropy>(env, e, "crossEntropy");
  Export<CosineSimilarity>(env, e, "cosineSimilarity");
  Export<Normalize>(env, e, "normalize");
  Export<Attention>(env, e, "attention");
  Export<Svd>(env, e, "svd");
  Export<Solve>(env, e, "solve");
  Export<CopyInto>(env, e, "copyInto");
  Export<FillInto>(env, e, "fillInto");
  Export<Equal>(env, e, "equal");
}

}  // namespace qdc
