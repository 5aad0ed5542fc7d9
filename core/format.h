// File: core/format.h
//
// Human-readable formatting shared by progress lines, tables and reports.
#ifndef TIMEBALANCE_CORE_FORMAT_H_
#define TIMEBALANCE_CORE_FORMAT_H_

#include <string>

namespace tb {

// A wall time rounded to whole seconds: "42s", "2m05s", "1h03m".
std::string FormatDuration(double seconds);

}  // namespace tb

#endif  // TIMEBALANCE_CORE_FORMAT_H_
