// Helpers for absl::Status plumbing (Abseil 20220623 ships no RETURN_IF_ERROR).
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define KARL_STATUS_CONCAT_INNER_(a, b) a##b
#define KARL_STATUS_CONCAT_(a, b) KARL_STATUS_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define KARL_RETURN_IF_ERROR(expr)                                \
  do {                                                            \
    if (absl::Status karl_status_ = (expr); !karl_status_.ok()) { \
      return karl_status_;                                        \
    }                                                             \
  } while (0)

// `lhs = value of statusor_expr`, or return its status when it is not OK.
#define KARL_ASSIGN_OR_RETURN(lhs, expr) \
  KARL_ASSIGN_OR_RETURN_IMPL_(KARL_STATUS_CONCAT_(karl_statusor_, __LINE__), lhs, expr)

#define KARL_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()
