#include "train/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace tb {

double LearningRateAt(const ScheduleConfig& s, double base_lr, int64_t step) {
  if (step < s.warmup_steps()) {
    return base_lr * static_cast<double>(step + 1) / (s.warmup_steps() + 1);
  }
  switch (s.decay_case()) {
    case ScheduleConfig::kCosine: {
      const double span = std::max<int64_t>(1, s.steps() - s.warmup_steps());
      const double progress = std::min(1.0, (step - s.warmup_steps()) / span);
      const double floor = s.cosine().final_fraction();
      return base_lr * (floor + (1 - floor) * 0.5 * (1 + std::cos(M_PI * progress)));
    }
    case ScheduleConfig::kStep: {
      double lr = base_lr;
      for (int64_t at : s.step().at_steps()) {
        if (step >= at) lr *= s.step().factor();
      }
      return lr;
    }
    case ScheduleConfig::kConstant:
    case ScheduleConfig::DECAY_NOT_SET:
      return base_lr;
  }
  return base_lr;
}

}  // namespace tb
