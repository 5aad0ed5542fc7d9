#include "core/torch_status.h"

namespace tb {

std::string ShortTorchMessage(const c10::Error& e) {
  std::string msg = e.what_without_backtrace();
  // LibTorch appends "Exception raised from ..." on its own line.
  const size_t cut = msg.find("\nException raised from");
  if (cut != std::string::npos) msg.resize(cut);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  return msg;
}

}  // namespace tb
