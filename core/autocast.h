// File: core/autocast.h
//
// Mixed precision for the forward pass: an RAII scope that turns LibTorch's
// autocast on for the device type (CPU: bf16; CUDA: bf16 or fp16) and restores
// the previous state when it ends. Backward passes run outside the scope, as
// in PyTorch's recipe. Weights stay fp32.
//
//   { AutocastScope autocast(device, Precision::kBf16); loss = model(x); }
//   loss.backward();
#ifndef TIMEBALANCE_CORE_AUTOCAST_H_
#define TIMEBALANCE_CORE_AUTOCAST_H_

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

namespace tb {

enum class Precision { kFp32, kBf16, kFp16 };

class AutocastScope {
 public:
  // kFp32 is a no-op scope. kFp16 is only meaningful on CUDA.
  AutocastScope(const c10::Device& device, Precision precision);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  bool cuda_ = false;
  bool previous_enabled_ = false;
  c10::ScalarType previous_dtype_ = c10::ScalarType::Undefined;
};

}  // namespace tb

#endif  // TIMEBALANCE_CORE_AUTOCAST_H_
