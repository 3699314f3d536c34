// Shared pieces of the qdc addon: the tensor handle (a JS object owning one at::Tensor),
// argument conversion helpers, and the guard that turns every C++ exception into a JS Error.
#pragma once

#include <napi.h>
#include <ATen/ATen.h>
#include <torch/version.h>

#include <c10/util/Optional.h>
#include <string>
#include <vector>

namespace qdc {

// Tensors live in a native table and JS holds their ids: a number crosses the N-API boundary
// far faster than a wrapped object. An id packs a slot index and that slot's generation, so a
// stale id (a disposed tensor) is detected instead of aliasing whichever tensor reuses the slot.
// The TypeScript side releases ids explicitly (dispose, scopes) and through a
// FinalizationRegistry as the backstop.
class TensorTable {
 public:
  static double Put(Napi::Env env, at::Tensor t);
  static at::Tensor* Find(double id);  // nullptr when disposed or not an id
  static bool Alive(double id);
  static void Release(Napi::Env env, double id);
  static int64_t live;

 private:
  struct Slot {
    at::Tensor tensor;
    uint32_t generation = 0;
    int64_t external_bytes = 0;
  };
  static std::vector<Slot> slots;
  static std::vector<uint32_t> free_slots;
};

// Every exported function runs inside this guard: torch's c10::Error (shape mismatch, wrong
// dtype, device mismatch, out of memory) and any std::exception become a JS Error.
template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value Guarded(const Napi::CallbackInfo& info) {
  try {
    return F(info);
  } catch (const Napi::Error&) {
    throw;
  } catch (const c10::Error& e) {
    throw Napi::Error::New(info.Env(), e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  }
}

template <Napi::Value (*F)(const Napi::CallbackInfo&)>
void Export(Napi::Env env, Napi::Object exports, const char* name) {
  exports.Set(name, Napi::Function::New(env, Guarded<F>, name));
}

[[noreturn]] void ThrowType(const Napi::CallbackInfo& info, size_t i, const char* expected);

// Argument readers: info[i] converted or a TypeError naming the argument position.
at::Tensor& Tensor(const Napi::CallbackInfo& info, size_t i);
c10::optional<at::Tensor> OptTensor(const Napi::CallbackInfo& info, size_t i);
std::vector<at::Tensor> TensorList(const Napi::CallbackInfo& info, size_t i);
int64_t Int(const Napi::CallbackInfo& info, size_t i);
c10::optional<int64_t> OptInt(const Napi::CallbackInfo& info, size_t i);
double Double(const Napi::CallbackInfo& info, size_t i);
c10::optional<double> OptDouble(const Napi::CallbackInfo& info, size_t i);
bool Bool(const Napi::CallbackInfo& info, size_t i);
std::string String(const Napi::CallbackInfo& info, size_t i);
std::vector<int64_t> IntList(const Napi::CallbackInfo& info, size_t i);
c10::optional<std::vector<int64_t>> OptIntList(const Napi::CallbackInfo& info, size_t i);
at::ScalarType DType(const Napi::CallbackInfo& info, size_t i);
c10::optional<at::ScalarType> OptDType(const Napi::CallbackInfo& info, size_t i);
at::Device Device(const Napi::CallbackInfo& info, size_t i);
c10::optional<at::Device> OptDevice(const Napi::CallbackInfo& info, size_t i);
bool IsNumber(const Napi::CallbackInfo& info, size_t i);
at::Scalar Scalar(const Napi::CallbackInfo& info, size_t i);
at::ScalarType CheckedDType(int64_t code);

Napi::Value Wrap(Napi::Env env, at::Tensor t);
Napi::Value WrapPair(Napi::Env env, const std::tuple<at::Tensor, at::Tensor>& p);
Napi::Value WrapList(Napi::Env env, const std::vector<at::Tensor>& list);

void RegisterTensorOps(Napi::Env env, Napi::Object exports);
void RegisterAutograd(Napi::Env env, Napi::Object exports);
void RegisterIO(Napi::Env env, Napi::Object exports);
void RegisterCpuAllocator(Napi::Env env, Napi::Object exports);
void RegisterDist(Napi::Env env, Napi::Object exports);

}  // namespace qdc
