// Addon entry: the tensor handle, argument helpers, runtime facts (threads, CUDA, versions),
// and random generator state.
#include "common.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <torch/cuda.h>

// The caching allocator's statistics need CUDA's runtime headers as well as a CUDA libtorch.
#if defined(QDC_WITH_CUDA) && __has_include(<cuda_runtime_api.h>) && __has_include(<c10/cuda/CUDACachingAllocator.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#define QDC_CUDA_MEMORY_STATS 1
#endif

namespace qdc {

constexpr double kSlotBits = 16777216.0;  // 2^24 slots; the generation is the rest of the id

int64_t TensorTable::live = 0;
std::vector<TensorTable::Slot> TensorTable::slots;
std::vector<uint32_t> TensorTable::free_slots;

static int64_t HostBytes(const at::Tensor& t) {
  if (!t.defined() || !t.device().is_cpu() || !t.has_storage()) return 0;
  return static_cast<int64_t>(t.storage().nbytes());
}

// Host memory held by live handles is reported to V8 only beyond a free allowance, so that the
// garbage collector (whose finalizers release forgotten tensors) feels pressure when tensors leak,
// and none while code disposes what it makes: reporting every tensor made V8 run major GCs
// constantly (measured: encode 25% slower).
constexpr int64_t kUnreportedHostBytes = int64_t{1} << 30;
static int64_t host_live_bytes = 0;
static int64_t host_reported_bytes = 0;

static void AccountHostBytes(Napi::Env env, int64_t delta) {
  host_live_bytes += delta;
  int64_t target = std::max<int64_t>(0, host_live_bytes - kUnreportedHostBytes);
  if (target != host_reported_bytes) {
    Napi::MemoryManagement::AdjustExternalMemory(env, target - host_reported_bytes);
    host_reported_bytes = target;
  }
}

double TensorTable::Put(Napi::Env env, at::Tensor t) {
  uint32_t index;
  if (!free_slots.empty()) {
    index = free_slots.back();
    free_slots.pop_back();
  } else {
    if (slots.size() >= static_cast<size_t>(kSlotBits)) throw std::runtime_error("more than 2^24 live tensors");
    index = static_cast<uint32_t>(slots.size());
    slots.emplace_back();
  }
  Slot& s = slots[index];
  s.tensor = std::move(t);
  // host memory the handle keeps alive (views of one storage count it more than once: that only
  // makes collection earlier)
  s.external_bytes = HostBytes(s.tensor);
  if (s.external_bytes) AccountHostBytes(env, s.external_bytes);
  live++;
  return static_cast<double>(s.generation) * kSlotBits + index;
}

static bool Decode(double id, uint32_t* index, uint32_t* generation) {
  if (!(id >= 0) || id > 9.007199254740991e15) return false;
  double g = std::floor(id / kSlotBits);
  *index = static_cast<uint32_t>(id - g * kSlotBits);
  *generation = static_cast<uint32_t>(g);
  return true;
}

bool TensorTable::Alive(double id) { return Find(id) != nullptr; }

at::Tensor* TensorTable::Find(double id) {
  uint32_t index, gen;
  if (!Decode(id, &index, &gen) || index >= slots.size()) return nullptr;
  Slot& s = slots[index];
  if (s.generation != gen || !s.tensor.defined()) return nullptr;
  return &s.tensor;
}

void TensorTable::Release(Napi::Env env, double id) {
  uint32_t index, gen;
  if (!Decode(id, &index, &gen) || index >= slots.size()) return;
  Slot& s = slots[index];
  if (s.generation != gen || !s.tensor.defined()) return;
  s.tensor = at::Tensor();
  if (s.external_bytes) AccountHostBytes(env, -s.external_bytes);
  s.external_bytes = 0;
  s.generation = (s.generation + 1) % (1u << 29);
  free_slots.push_back(index);
  live--;
}

Napi::Value Wrap(Napi::Env env, at::Tensor t) {
  if (!t.defined()) return env.Null();
  return Napi::Number::New(env, TensorTable::Put(env, std::move(t)));
}

Napi::Value WrapPair(Napi::Env env, const std::tuple<at::Tensor, at::Tensor>& p) {
  Napi::Array a = Napi::Array::New(env, 2);
  a.Set(0u, Wrap(env, std::get<0>(p)));
  a.Set(1u, Wrap(env, std::get<1>(p)));
  return a;
}

Napi::Value WrapList(Napi::Env env, const std::vector<at::Tensor>& list) {
  Napi::Array a = Napi::Array::New(env, list.size());
  for (size_t i = 0; i < list.size(); i++) a.Set(static_cast<uint32_t>(i), Wrap(env, list[i]));
  return a;
}

void ThrowType(const Napi::CallbackInfo& info, size_t i, const char* expected) {
  throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + ": expected " + expected);
}

static bool Absent(const Napi::CallbackInfo& info, size_t i) {
  return i >= info.Length() || info[i].IsUndefined() || info[i].IsNull();
}

at::Tensor& Tensor(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsNumber()) ThrowType(info, i, "a tensor");
  at::Tensor* t = TensorTable::Find(info[i].As<Napi::Number>().DoubleValue());
  if (!t) throw Napi::Error::New(info.Env(), "argument " + std::to_string(i) + ": tensor was disposed (or is not a tensor)");
  return *t;
}

c10::optional<at::Tensor> OptTensor(const Napi::CallbackInfo& info, size_t i) {
  if (Absent(info, i)) return c10::nullopt;
  return Tensor(info, i);
}

std::vector<at::Tensor> TensorList(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsArray()) ThrowType(info, i, "an array of tensors");
  Napi::Array a = info[i].As<Napi::Array>();
  std::vector<at::Tensor> out;
  out.reserve(a.Length());
  for (uint32_t k = 0; k < a.Length(); k++) {
    Napi::Value v = a.Get(k);
    if (!v.IsNumber()) ThrowType(info, i, "an array of tensors");
    at::Tensor* t = TensorTable::Find(v.As<Napi::Number>().DoubleValue());
    if (!t) throw Napi::Error::New(info.Env(), "tensor list element " + std::to_string(k) + " was disposed (or is not a tensor)");
    out.push_back(*t);
  }
  return out;
}

bool IsNumber(const Napi::CallbackInfo& info, size_t i) {
  return i < info.Length() && (info[i].IsNumber() || info[i].IsBoolean());
}

int64_t Int(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsNumber()) ThrowType(info, i, "an integer");
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<int64_t>(d))) ThrowType(info, i, "an integer");
  return static_cast<int64_t>(d);
}

c10::optional<int64_t> OptInt(const Napi::CallbackInfo& info, size_t i) {
  if (Absent(info, i)) return c10::nullopt;
  return Int(info, i);
}

double Double(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsNumber()) ThrowType(info, i, "a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

c10::optional<double> OptDouble(const Napi::CallbackInfo& info, size_t i) {
  if (Absent(info, i)) return c10::nullopt;
  return Double(info, i);
}

bool Bool(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsBoolean()) ThrowType(info, i, "a boolean");
  return info[i].As<Napi::Boolean>().Value();
}

std::string String(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsString()) ThrowType(info, i, "a string");
  return info[i].As<Napi::String>().Utf8Value();
}

std::vector<int64_t> IntList(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsArray()) ThrowType(info, i, "an array of integers");
  Napi::Array a = info[i].As<Napi::Array>();
  std::vector<int64_t> out(a.Length());
  for (uint32_t k = 0; k < a.Length(); k++) {
    Napi::Value v = a.Get(k);
    if (!v.IsNumber()) ThrowType(info, i, "an array of integers");
    double d = v.As<Napi::Number>().DoubleValue();
    if (d != static_cast<double>(static_cast<int64_t>(d))) ThrowType(info, i, "an array of integers");
    out[k] = static_cast<int64_t>(d);
  }
  return out;
}

c10::optional<std::vector<int64_t>> OptIntList(const Napi::CallbackInfo& info, size_t i) {
  if (Absent(info, i)) return c10::nullopt;
  return IntList(info, i);
}

at::ScalarType CheckedDType(int64_t code) {
  switch (static_cast<at::ScalarType>(code)) {
    case at::kFloat: case at::kDouble: case at::kHalf: case at::kBFloat16:
    case at::kLong: case at::kInt: case at::kShort: case at::kChar: case at::kByte: case at::kBool:
      return static_cast<at::ScalarType>(code);
    default:
      throw std::invalid_argument("unsupported dtype code " + std::to_string(code));
  }
}

at::ScalarType DType(const Napi::CallbackInfo& info, size_t i) { return CheckedDType(Int(info, i)); }

c10::optional<at::ScalarType> OptDType(const Napi::CallbackInfo& info, size_t i) {
  if (Absent(info, i)) return c10::nullopt;
  return DType(info, i);
}

at::Device Device(const Napi::CallbackInfo& info, size_t i) { return at::Device(String(info, i)); }

c10::optional<at::Device> OptDevice(const Napi::CallbackInfo& info, size_t i) {
  if (Absent(info, i)) return c10::nullopt;
  return Device(info, i);
}

at::Scalar Scalar(const Napi::CallbackInfo& info, size_t i) {
  if (i < info.Length() && info[i].IsBoolean()) return at::Scalar(info[i].As<Napi::Boolean>().Value());
  double d = Double(info, i);
  // Integral JS numbers act like Python ints (an int tensor stays int), others like floats.
  if (std::isfinite(d) && d == static_cast<double>(static_cast<int64_t>(d)) && std::abs(d) < 9.007199254740992e15) {
    return at::Scalar(static_cast<int64_t>(d));
  }
  return at::Scalar(d);
}

// ---- runtime facts ----

static Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  int64_t n = Int(info, 0);
  if (n < 1) throw Napi::RangeError::New(info.Env(), "thread count must be at least 1");
  at::set_num_threads(static_cast<int>(n));
  return info.Env().Undefined();
}

static Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), at::get_num_threads());
}

static Napi::Value LiveTensors(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(TensorTable::live));
}

static Napi::Value Dispose(const Napi::CallbackInfo& info) {
  TensorTable::Release(info.Env(), Double(info, 0));
  return info.Env().Undefined();
}

static Napi::Value IsDisposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !TensorTable::Alive(Double(info, 0)));
}

static Napi::Value Versions(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("torch", std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
                     std::to_string(TORCH_VERSION_PATCH));
#ifdef QDC_WITH_CUDA
  o.Set("cudaBuild", true);
#else
  o.Set("cudaBuild", false);
#endif
  o.Set("parallel", at::get_parallel_info());
  return o;
}

static Napi::Value CudaAvailable(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), torch::cuda::is_available());
}

static Napi::Value CudaDeviceCount(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(torch::cuda::device_count()));
}

static Napi::Value CudaSynchronize(const Napi::CallbackInfo& info) {
  int64_t dev = OptInt(info, 0).value_or(-1);
  if (!torch::cuda::is_available()) throw Napi::Error::New(info.Env(), "CUDA is not available in this build or machine");
  torch::cuda::synchronize(dev);
  return info.Env().Undefined();
}

// Bytes currently allocated by the CUDA caching allocator on one device.
static Napi::Value CudaMemoryAllocated(const Napi::CallbackInfo& info) {
  int64_t dev = OptInt(info, 0).value_or(0);
#ifdef QDC_CUDA_MEMORY_STATS
  if (!torch::cuda::is_available()) return Napi::Number::New(info.Env(), 0);
  auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(dev));
  return Napi::Number::New(info.Env(), static_cast<double>(stats.allocated_bytes[0].current));
#else
  (void)dev;
  if (torch::cuda::is_available()) {
    throw Napi::Error::New(info.Env(), "CUDA memory statistics need CUDA's runtime headers at build time (set CUDA_HOME and rebuild)");
  }
  return Napi::Number::New(info.Env(), 0);
#endif
}

// ---- random generators ----

static Napi::Value ManualSeed(const Napi::CallbackInfo& info) {
  at::manual_seed(static_cast<uint64_t>(Int(info, 0)));
  return info.Env().Undefined();
}

static at::Generator DefaultGenerator(const Napi::CallbackInfo& info, size_t i) {
  at::Device d = OptDevice(info, i).value_or(at::Device(at::kCPU));
  if (d.is_cuda() && !d.has_index()) d = at::Device(at::kCUDA, 0);
  return at::globalContext().defaultGenerator(d);
}

static Napi::Value RngGetState(const Napi::CallbackInfo& info) {
  at::Generator gen = DefaultGenerator(info, 0);
  at::Tensor state;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    state = gen.get_state();
  }
  state = state.contiguous();
  Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(info.Env(), state.nbytes());
  std::memcpy(buf.Data(), state.data_ptr(), state.nbytes());
  return buf;
}

static Napi::Value RngSetState(const Napi::CallbackInfo& info) {
  at::Generator gen = DefaultGenerator(info, 0);
  if (info.Length() < 2 || !info[1].IsArrayBuffer()) ThrowType(info, 1, "an ArrayBuffer of generator state");
  Napi::ArrayBuffer buf = info[1].As<Napi::ArrayBuffer>();
  at::Tensor state = at::empty({static_cast<int64_t>(buf.ByteLength())}, at::kByte);
  std::memcpy(state.data_ptr(), buf.Data(), buf.ByteLength());
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
  return info.Env().Undefined();
}

static Napi::Value GradEnabled(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), c10::GradMode::is_enabled());
}

static Napi::Value SetGradEnabled(const Napi::CallbackInfo& info) {
  bool prev = c10::GradMode::is_enabled();
  c10::GradMode::set_enabled(Bool(info, 0));
  return Napi::Boolean::New(info.Env(), prev);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  RegisterCpuAllocator(env, exports);  // first: before any tensor is allocated
  Export<SetNumThreads>(env, exports, "setNumThreads");
  Export<GetNumThreads>(env, exports, "getNumThreads");
  Export<LiveTensors>(env, exports, "liveTensors");
  Export<Dispose>(env, exports, "dispose");
  Export<IsDisposed>(env, exports, "isDisposed");
  Export<Versions>(env, exports, "versions");
  Export<CudaAvailable>(env, exports, "cudaAvailable");
  Export<CudaDeviceCount>(env, exports, "cudaDeviceCount");
  Export<CudaSynchronize>(env, exports, "cudaSynchronize");
  Export<CudaMemoryAllocated>(env, exports, "cudaMemoryAllocated");
  Export<ManualSeed>(env, exports, "manualSeed");
  Export<RngGetState>(env, exports, "rngGetState");
  Export<RngSetState>(env, exports, "rngSetState");
  Export<GradEnabled>(env, exports, "gradEnabled");
  Export<SetGradEnabled>(env, exports, "setGradEnabled");
  RegisterTensorOps(env, exports);
  RegisterAutograd(env, exports);
  RegisterIO(env, exports);
  RegisterDist(env, exports);
  return exports;
}

}  // namespace qdc

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return qdc::Init(env, exports); }
NODE_API_MODULE(qdc, InitAddon)
