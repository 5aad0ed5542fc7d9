// File: core/config_check.h
//
// FieldChecker: what every Validate function uses to check config values and
// report the first bad one with its full path, in one format:
//
//   config field timebalance.distill.optimizer.adam.lr = -1: must be > 0
//
//   FieldChecker c(scope.path);                 // "trainer.fixmatch"
//   c.Require(o.threshold() <= 1, "pseudo_label.threshold", o.threshold(),
//             "must be in [0, 1]");
//   return c.status();
//
// The first failure wins (later checks may assume earlier ones held, but
// must not crash when they did not). Errors are InvalidArgument, which the
// binaries map to exit code 2.
#ifndef TIMEBALANCE_CORE_CONFIG_CHECK_H_
#define TIMEBALANCE_CORE_CONFIG_CHECK_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/registry.h"

namespace tb {

class FieldChecker {
 public:
  // `path` is where the checked message sits ("" for the experiment itself).
  explicit FieldChecker(std::string path) : path_(std::move(path)) {}

  // `field` is relative to the path ("adam.lr"); `value` is printed as is.
  template <typename T>
  FieldChecker& Require(bool ok, absl::string_view field, const T& value,
                        absl::string_view rule) {
    if (!ok && status_.ok()) {
      status_ = absl::InvalidArgumentError(
          absl::StrCat("config field ", Path(field), " = ", value, ": ", rule));
    }
    return *this;
  }

  // A required field: "config field <path> is required: <what>".
  FieldChecker& RequireSet(bool set, absl::string_view field, absl::string_view what) {
    if (!set && status_.ok()) {
      status_ = absl::InvalidArgumentError(
          absl::StrCat("config field ", Path(field), " is required: ", what));
    }
    return *this;
  }

  // A free-form failure about `field`: "config field <path>: <message>".
  FieldChecker& Fail(bool failed, absl::string_view field, absl::string_view message) {
    if (failed && status_.ok()) {
      status_ = absl::InvalidArgumentError(absl::StrCat("config field ", Path(field), ": ",
                                                        message));
    }
    return *this;
  }

  // Keeps `s` when it is the first failure (its code made InvalidArgument).
  FieldChecker& Merge(const absl::Status& s) {
    if (!s.ok() && status_.ok()) status_ = absl::InvalidArgumentError(s.message());
    return *this;
  }

  std::string Path(absl::string_view field) const {
    return JoinConfigPath(path_, std::string(field));
  }
  const std::string& path() const { return path_; }
  absl::Status status() const { return status_; }
  bool ok() const { return status_.ok(); }

 private:
  std::string path_;
  absl::Status status_;
};

}  // namespace tb

#endif  // TIMEBALANCE_CORE_CONFIG_CHECK_H_
