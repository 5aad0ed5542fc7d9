// Default runtime options and suppressions of the sanitizers, compiled into
// every binary of --config=asan, ubsan, tsan and fuzz (see BUILD.bazel). The
// runtimes call these functions at start-up; the environment
// (ASAN_OPTIONS, UBSAN_OPTIONS, TSAN_OPTIONS, LSAN_OPTIONS) still overrides
// any option. In a build without sanitizers nothing calls them.
//
// Only our code is instrumented. LibTorch, FFmpeg, protobuf, OpenCV, glog and
// the C++ runtime are Debian's uninstrumented libraries; what that means for
// each sanitizer is said at its options. docs/RELIABILITY.md, "Sanitizers",
// has the measured results.

namespace {
#include "tools/sanitizers/suppressions.inc"
}  // namespace

extern "C" {

// ASan (with LeakSanitizer, which it runs at exit).
//   detect_leaks=1: on; LibTorch's and protobuf's static registries stay
//     reachable from globals and are not reported. What is reported anyway
//     is suppressed in lsan.supp with the reason.
//   detect_stack_use_after_return=1: catches pointers to dead stack frames
//     (gcc 12 instruments for it; the runtime check is off by default).
//   strict_string_checks=1: string functions check their whole argument.
//   check_initialization_order=1: static initialisers that read another
//     translation unit's unconstructed globals (our component registries
//     register from static initialisers).
//   allocator_may_return_null=1: a request for more memory than the
//     allocator can give throws std::bad_alloc (as without ASan) instead of
//     killing the process; the fuzzers' -malloc_limit_mb still reports
//     oversized allocations.
//   print_suppressions=0: quiet logs.
__attribute__((visibility("default"), used)) const char* __asan_default_options() {
  return "detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1:"
         "check_initialization_order=1:allocator_may_return_null=1:print_suppressions=0";
}

__attribute__((visibility("default"), used)) const char* __lsan_default_suppressions() {
  return k_lsan;
}

// UBSan: every finding stops the program (the compile flag
// -fno-sanitize-recover does that too) with a stack trace. The UBSan runtime
// has no compiled-in suppressions; a check that cannot hold for code we do
// not own is switched off in .bazelrc with the reason.
__attribute__((visibility("default"), used)) const char* __ubsan_default_options() {
  return "print_stacktrace=1:halt_on_error=1:print_suppressions=0";
}

// TSan: a report makes the process exit with 66 at the end (so the test
// fails) after reporting every race; second_deadlock_stack shows both
// stacks of a lock-order inversion. ignore_noninstrumented_modules=1 (the
// default on macOS): interceptors (memcpy, operator delete,
// pthread_cond_destroy, ...) called from an uninstrumented library do not
// count as that library's memory accesses. LibTorch is uninstrumented: it
// frees objects whose last reference it dropped with atomics TSan cannot
// see, so without this every Gloo collective reported a "race" between
// its worker thread and the caller inside libtorch_cpu
// (//train:distributed_test, 2026-12-04). Our own code's accesses are
// instrumented and still checked.
__attribute__((visibility("default"), used)) const char* __tsan_default_options() {
  return "second_deadlock_stack=1:print_suppressions=0:history_size=4:"
         "ignore_noninstrumented_modules=1";
}

__attribute__((visibility("default"), used)) const char* __tsan_default_suppressions() {
  return k_tsan;
}

}  // extern "C"
