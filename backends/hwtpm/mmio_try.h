// Early-return helpers for the register-level drivers, where nearly every
// line is an MMIO access that can fail (out of window). Internal to
// backends/hwtpm/*.cc.
#pragma once

// Declares `var` from a Result-returning expression, returning its Error.
#define HWTPM_TRY(var, expr)                      \
  auto var##_result_ = (expr);                    \
  if (!var##_result_.ok()) return var##_result_.error(); \
  auto var = std::move(*var##_result_)

// Returns the Error of a Status- or Result-returning expression.
#define HWTPM_CHECK(expr)                         \
  do {                                            \
    if (auto check_ = (expr); !check_.ok()) return check_.error(); \
  } while (0)
