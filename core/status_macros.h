// File: core/status_macros.h
//
// RETURN_IF_ERROR and ASSIGN_OR_RETURN for absl::Status / absl::StatusOr,
// which Debian's Abseil (20220623) does not ship.
//
//   RETURN_IF_ERROR(WriteFile(path));
//   ASSIGN_OR_RETURN(Manifest m, ReadManifest(path));
#ifndef TIMEBALANCE_CORE_STATUS_MACROS_H_
#define TIMEBALANCE_CORE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define TB_STATUS_CONCAT_INNER_(a, b) a##b
#define TB_STATUS_CONCAT_(a, b) TB_STATUS_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                                   \
  do {                                                          \
    ::absl::Status tb_status_ = (expr);                         \
    if (!tb_status_.ok()) return tb_status_;                    \
  } while (0)

#define TB_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                              \
  if (!statusor.ok()) return statusor.status();         \
  lhs = std::move(statusor).value()

#define ASSIGN_OR_RETURN(lhs, rexpr) \
  TB_ASSIGN_OR_RETURN_IMPL_(TB_STATUS_CONCAT_(tb_statusor_, __LINE__), lhs, rexpr)

#endif  // TIMEBALANCE_CORE_STATUS_MACROS_H_
