// File: core/torch_status.h
//
// Converts LibTorch's exceptions (c10::Error and std::exception) into
// absl::Status at component boundaries, so that a shape mismatch or a bad
// checkpoint becomes an error message instead of a crash with a stack trace.
//
//   absl::StatusOr<torch::Tensor> out = CallTorch("backbone forward", [&] {
//     return model->forward(x);
//   });
#ifndef TIMEBALANCE_CORE_TORCH_STATUS_H_
#define TIMEBALANCE_CORE_TORCH_STATUS_H_

#include <exception>
#include <string>
#include <type_traits>

#include <c10/util/Exception.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tb {

// The first line of a c10::Error message, without LibTorch's C++ backtrace.
std::string ShortTorchMessage(const c10::Error& e);

// Runs `fn`; a thrown c10::Error or std::exception becomes an Internal (or
// InvalidArgument for c10 value/index/type errors) status prefixed by `what`.
template <typename Fn>
auto CallTorch(absl::string_view what, Fn&& fn)
    -> std::conditional_t<std::is_void_v<std::invoke_result_t<Fn>>, absl::Status,
                          absl::StatusOr<std::invoke_result_t<Fn>>> {
  try {
    if constexpr (std::is_void_v<std::invoke_result_t<Fn>>) {
      fn();
      return absl::OkStatus();
    } else {
      return fn();
    }
  } catch (const c10::ValueError& e) {
    return absl::InvalidArgumentError(std::string(what) + ": " + ShortTorchMessage(e));
  } catch (const c10::IndexError& e) {
    return absl::InvalidArgumentError(std::string(what) + ": " + ShortTorchMessage(e));
  } catch (const c10::TypeError& e) {
    return absl::InvalidArgumentError(std::string(what) + ": " + ShortTorchMessage(e));
  } catch (const c10::Error& e) {
    return absl::InternalError(std::string(what) + ": " + ShortTorchMessage(e));
  } catch (const std::exception& e) {
    return absl::InternalError(std::string(what) + ": " + e.what());
  }
}

}  // namespace tb

#endif  // TIMEBALANCE_CORE_TORCH_STATUS_H_
