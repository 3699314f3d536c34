// Moving bytes in and out of tensors: from JS typed arrays, to ArrayBuffers, and straight from a
// file range into a new tensor (safetensors reading without an intermediate JS buffer).
#include "common.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace qdc {
namespace {

using Info = Napi::CallbackInfo;
using V = Napi::Value;

int64_t Numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) {
    if (s < 0) throw std::invalid_argument("negative dimension " + std::to_string(s) + " in shape");
    if (s != 0 && n > (int64_t{1} << 50) / s) throw std::invalid_argument("shape has too many elements");
    n *= s;
  }
  return n;
}

// (typedArray, dtype, shape, device?) → tensor holding a copy of the array's bytes.
V FromData(const Info& info) {
  if (!info[0].IsTypedArray()) ThrowType(info, 0, "a typed array");
  Napi::TypedArray arr = info[0].As<Napi::TypedArray>();
  at::ScalarType dt = DType(info, 1);
  auto shape = IntList(info, 2);
  int64_t n = Numel(shape);
  size_t bytes = static_cast<size_t>(n) * c10::elementSize(dt);
  if (arr.ByteLength() != bytes) {
    throw std::invalid_argument("data has " + std::to_string(arr.ByteLength()) + " bytes, shape " + c10::str(at::IntArrayRef(shape)) +
                                " of " + c10::toString(dt) + " needs " + std::to_string(bytes));
  }
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dt));
  if (bytes) std::memcpy(t.data_ptr(), static_cast<uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset(), bytes);
  auto dev = OptDevice(info, 3);
  if (dev && !dev->is_cpu()) t = t.to(*dev);
  return Wrap(info.Env(), t);
}

// tensor → ArrayBuffer with its elements in row-major order (copied to the CPU if needed).
V ToBuffer(const Info& info) {
  at::Tensor t = Tensor(info, 0).detach();
  if (!t.device().is_cpu()) t = t.to(at::kCPU);
  t = t.contiguous();
  Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(info.Env(), t.nbytes());
  if (t.nbytes()) std::memcpy(buf.Data(), t.data_ptr(), t.nbytes());
  return buf;
}

// (path, byteOffset, dtype, shape, device?) → tensor read from the file's bytes at that offset.
V FromFile(const Info& info) {
  std::string path = String(info, 0);
  double off = Double(info, 1);
  at::ScalarType dt = DType(info, 2);
  auto shape = IntList(info, 3);
  size_t bytes = static_cast<size_t>(Numel(shape)) * c10::elementSize(dt);
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dt));
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(path + ": " + std::strerror(errno));
  size_t done = 0;
  auto* dst = static_cast<uint8_t*>(t.data_ptr());
  while (done < bytes) {
    ssize_t r = ::pread(fd, dst + done, bytes - done, static_cast<off_t>(off) + static_cast<off_t>(done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      int err = errno;
      ::close(fd);
      throw std::runtime_error(path + ": " + (r == 0 ? std::string("file ends before the tensor's data (truncated?)") : std::strerror(err)));
    }
    done += static_cast<size_t>(r);
  }
  ::close(fd);
  auto dev = OptDevice(info, 4);
  if (dev && !dev->is_cpu()) t = t.to(*dev);
  return Wrap(info.Env(), t);
}

}  // namespace

void RegisterIO(Napi::Env env, Napi::Object e) {
  Export<FromData>(env, e, "fromData");
  Export<ToBuffer>(env, e, "toBuffer");
  Export<FromFile>(env, e, "fromFile");
}

}  // namespace qdc
