// Autograd access (requires-grad, grad, backward) and the optimiser kernels: AdamW and
// gradient-norm clipping. Optimiser state tensors live on the TypeScript side, so saving and
// resuming an optimiser is saving tensors.
#include "common.h"

#include <cmath>

namespace qdc {
namespace {

using Info = Napi::CallbackInfo;
using V = Napi::Value;

V RequiresGrad(const Info& info) { return Napi::Boolean::New(info.Env(), Tensor(info, 0).requires_grad()); }
V SetRequiresGrad(const Info& info) {
  Tensor(info, 0).requires_grad_(Bool(info, 1));
  return info.Env().Undefined();
}
V IsLeaf(const Info& info) { return Napi::Boolean::New(info.Env(), Tensor(info, 0).is_leaf()); }
V Grad(const Info& info) { return Wrap(info.Env(), Tensor(info, 0).grad()); }
V SetGrad(const Info& info) {  // (t, grad | null): null drops the gradient (set_to_none)
  auto g = OptTensor(info, 1);
  Tensor(info, 0).mutable_grad() = g ? *g : at::Tensor();
  return info.Env().Undefined();
}
V RetainGrad(const Info& info) {
  Tensor(info, 0).retain_grad();
  return info.Env().Undefined();
}
V Backward(const Info& info) {  // (t, gradient?, retain_graph)
  const at::Tensor& t = Tensor(info, 0);
  auto g = OptTensor(info, 1);
  bool retain = info.Length() > 2 && info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value();
  t.backward(g ? *g : at::Tensor(), retain);
  return info.Env().Undefined();
}

// One AdamW step over a parameter group, exactly as torch.optim.AdamW's single-tensor path:
//   p ← p·(1 − lr·wd);  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
//   p ← p − lr/(1−β1^t) · m / (√v/√(1−β2^t) + ε)
// Arguments: (params[], exp_avg[], exp_avg_sq[], steps (Float64Array, the step count t of each
// parameter after this step), lr, beta1, beta2, eps, weight_decay). Parameters without a
// gradient are skipped.
V AdamW(const Info& info) {
  auto params = TensorList(info, 0);
  auto m = TensorList(info, 1);
  auto v = TensorList(info, 2);
  if (!info[3].IsTypedArray()) ThrowType(info, 3, "a Float64Array of step counts");
  Napi::Float64Array steps = info[3].As<Napi::Float64Array>();
  double lr = Double(info, 4), b1 = Double(info, 5), b2 = Double(info, 6), eps = Double(info, 7), wd = Double(info, 8);
  if (m.size() != params.size() || v.size() != params.size() || steps.ElementLength() != params.size()) {
    throw std::invalid_argument("adamw: params, exp_avg, exp_avg_sq and steps must have the same length");
  }
  at::NoGradGuard guard;
  for (size_t i = 0; i < params.size(); i++) {
    at::Tensor& p = params[i];
    const at::Tensor& g = p.grad();
    if (!g.defined()) continue;
    if (!m[i].sizes().equals(p.sizes()) || !v[i].sizes().equals(p.sizes())) {
      throw std::invalid_argument("adamw: state of parameter " + std::to_string(i) + " has shape " +
                                  c10::str(m[i].sizes()) + ", parameter has " + c10::str(p.sizes()));
    }
    double t = steps[i];
    if (wd != 0) p.mul_(1 - lr * wd);
    m[i].mul_(b1).add_(g, 1 - b1);
    v[i].mul_(b2).addcmul_(g, g, 1 - b2);
    double bc1 = 1 - std::pow(b1, t);
    double bc2 = 1 - std::pow(b2, t);
    at::Tensor denom = (v[i].sqrt() / std::sqrt(bc2)).add_(eps);
    p.addcdiv_(m[i], denom, -lr / bc1);
  }
  return info.Env().Undefined();
}

// Scales the gradients so that their total p-norm is at most max_norm, as
// torch.nn.utils.clip_grad_norm_; returns the total norm before clipping.
V ClipGradNorm(const Info& info) {  // (params[], max_norm, norm_type)
  auto params = TensorList(info, 0);
  double max_norm = Double(info, 1);
  double p = Double(info, 2);
  at::NoGradGuard guard;
  std::vector<at::Tensor> grads;
  for (auto& t : params)
    if (t.grad().defined()) grads.push_back(t.grad());
  if (grads.empty()) return Napi::Number::New(info.Env(), 0);
  std::vector<at::Tensor> norms;
  at::Device dev = grads[0].device();
  for (auto& g : grads) {
    at::Tensor n = std::isinf(p) ? g.abs().max() : at::norm(g, at::Scalar(p));
    norms.push_back(n.to(dev, at::kFloat));
  }
  at::Tensor stacked = at::stack(norms);
  at::Tensor total = std::isinf(p) ? stacked.max() : at::norm(stacked, at::Scalar(p));
  at::Tensor coef = (max_norm / (total + 1e-6)).clamp_max(1.0);
  for (auto& g : grads) g.mul_(coef.to(g.device(), g.scalar_type()));
  return Napi::Number::New(info.Env(), total.item<double>());
}

}  // namespace

void RegisterAutograd(Napi::Env env, Napi::Object e) {
  Export<RequiresGrad>(env, e, "requiresGrad");
  Export<SetRequiresGrad>(env, e, "setRequiresGrad");
  Export<IsLeaf>(env, e, "isLeaf");
  Export<Grad>(env, e, "grad");
  Export<SetGrad>(env, e, "setGrad");
  Export<RetainGrad>(env, e, "retainGrad");
  Export<Backward>(env, e, "backward");
  Export<AdamW>(env, e, "adamw");
  Export<ClipGradNorm>(env, e, "clipGradNorm");
}

}  // namespace qdc
