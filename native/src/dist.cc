// Data-parallel collectives on libtorch's own c10d: a TCPStore for the rendezvous (rank 0 serves
// it at MASTER_ADDR:MASTER_PORT, as torchrun's env:// does) and a Gloo process group (CPU). One
// group per process; every call blocks until all ranks took part or the group's timeout passed,
// and a rank that died makes the others' next collective fail with Gloo's error instead of hanging.
// Built where the Gloo headers are found (QDC_WITH_DIST, see torch-paths.cjs); elsewhere every
// function says so.
#include "common.h"

#ifdef QDC_WITH_DIST
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

#include <chrono>
#include <cstdlib>
#include <memory>

namespace qdc {
namespace {

using Info = Napi::CallbackInfo;
using V = Napi::Value;

#ifdef QDC_WITH_DIST
c10::intrusive_ptr<c10d::ProcessGroupGloo> group;

c10d::ProcessGroupGloo& Group() {
  if (!group) throw std::runtime_error("no process group: call distInit first");
  return *group;
}

// (rank, world, masterAddr, masterPort, timeoutMs, serve, prefix): `serve` false when a launcher
// already serves the store at that address (torchrun's agent store); the group's keys live under
// `prefix` (a launcher's store outlives restarts of its workers)
V DistInit(const Info& info) {
  if (group) throw std::runtime_error("a process group exists already in this process (distDestroy it first)");
  int64_t rank = Int(info, 0), world = Int(info, 1);
  std::string addr = String(info, 2);
  int64_t port = Int(info, 3), timeout = Int(info, 4);
  bool serve = Bool(info, 5);
  std::string prefix = String(info, 6);
  if (world < 1 || rank < 0 || rank >= world)
    throw std::invalid_argument("distInit: rank " + std::to_string(rank) + " is not in [0, " + std::to_string(world) + ")");
  if (port < 1 || port > 65535) throw std::invalid_argument("distInit: port " + std::to_string(port) + " is not a TCP port");
  std::chrono::milliseconds ms(timeout);
  c10d::TCPStoreOptions so;
  so.port = static_cast<std::uint16_t>(port);
  so.isServer = serve && rank == 0;
  so.numWorkers = static_cast<std::size_t>(world);
  so.waitWorkers = true;
  so.timeout = ms;
  auto tcp = c10::make_intrusive<c10d::TCPStore>(addr, so);
  auto store = c10::make_intrusive<c10d::PrefixStore>(prefix, tcp);
  auto opts = c10d::ProcessGroupGloo::Options::create(ms);
  // the interface this rank talks on, as PyTorch picks it: GLOO_SOCKET_IFNAME when set; loopback
  // for a group on one machine at a loopback rendezvous; else the address this host's name
  // resolves to (the rendezvous host is another machine's for every rank but 0)
  const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
  if (ifname && *ifname)
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  else if (addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1")
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  else
    opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, static_cast<int>(rank), static_cast<int>(world), opts);
  return info.Env().Undefined();
}

V DistDestroy(const Info& info) {
  group.reset();
  return info.Env().Undefined();
}

// Sums every parameter's gradient over the ranks in place, in one collective over a flat buffer:
// the gradients (zeros where a rank has none, so every rank sends the same layout), then one count
// per parameter of the ranks that had one. A parameter no rank has a gradient for keeps none (the
// optimiser skips it, as in one process); one some ranks have gets the sum.
V AllReduceGrads(const Info& info) {  // (params[])
  auto params = TensorList(info, 0);
  at::NoGradGuard guard;
  if (params.empty()) return info.Env().Undefined();
  std::vector<at::Tensor> flat;
  std::vector<float> had;
  for (auto& p : params) {
    const at::Tensor& g = p.grad();
    flat.push_back(g.defined() ? g.reshape(-1).to(at::kFloat) : at::zeros({p.numel()}, p.options().dtype(at::kFloat)));
    had.push_back(g.defined() ? 1.0f : 0.0f);
  }
  flat.push_back(at::tensor(had, flat[0].options()));
  std::vector<at::Tensor> buffer{at::cat(flat)};
  Group().allreduce(buffer)->wait();
  int64_t total = buffer[0].numel() - static_cast<int64_t>(params.size());
  at::Tensor counts = buffer[0].narrow(0, total, static_cast<int64_t>(params.size())).cpu().contiguous();
  const float* count = counts.data_ptr<float>();
  at::Tensor grads = buffer[0].narrow(0, 0, total);
  int64_t offset = 0;
  for (size_t i = 0; i < params.size(); i++) {
    at::Tensor& p = params[i];
    at::Tensor part = grads.narrow(0, offset, p.numel()).view(p.sizes());
    offset += p.numel();
    if (p.grad().defined())
      p.mutable_grad().copy_(part);
    else if (count[i] > 0)
      p.mutable_grad() = part.to(p.scalar_type()).clone();
  }
  return info.Env().Undefined();
}

// The ranks' tensors (same shape on every rank) concatenated along dim 0, rank order; no autograd.
V AllGather(const Info& info) {
  at::Tensor t = Tensor(info, 0).detach().contiguous();
  std::vector<at::Tensor> input{t};
  std::vector<std::vector<at::Tensor>> output(1);
  for (int i = 0; i < Group().getSize(); i++) output[0].push_back(at::empty_like(t));
  Group().allgather(output, input)->wait();
  return Wrap(info.Env(), at::cat(output[0], 0));
}

V Barrier(const Info& info) {
  Group().barrier()->wait();
  return info.Env().Undefined();
}

V DistAvailable(const Info& info) { return Napi::Boolean::New(info.Env(), true); }
#else
V Unavailable(const Info& info) {
  throw std::runtime_error(
      "this qdc addon was built without c10d/Gloo (no Gloo headers: on Debian `apt-get install libgloo-dev`, then "
      "`npm run build:native`)");
}
V DistAvailable(const Info& info) { return Napi::Boolean::New(info.Env(), false); }
#define DistInit Unavailable
#define DistDestroy Unavailable
#define AllReduceGrads Unavailable
#define AllGather Unavailable
#define Barrier Unavailable
#endif

}  // namespace

void RegisterDist(Napi::Env env, Napi::Object e) {
  Export<DistAvailable>(env, e, "distAvailable");
  Export<DistInit>(env, e, "distInit");
  Export<DistDestroy>(env, e, "distDestroy");
  Export<AllReduceGrads>(env, e, "allReduceGrads");
  Export<AllGather>(env, e, "allGather");
  Export<Barrier>(env, e, "barrier");
}

}  // namespace qdc
