// File: train/lr_schedule.h
//
// Learning rate as a function of the step: linear warm-up from 0 over
// `warmup_steps`, then cosine decay to final_fraction * base, step decay, or
// constant, over the remaining steps.
#ifndef TIMEBALANCE_TRAIN_LR_SCHEDULE_H_
#define TIMEBALANCE_TRAIN_LR_SCHEDULE_H_

#include <cstdint>

#include "core/optimization.pb.h"

namespace tb {

// Learning rate for the optimizer step with index `step` (0-based).
double LearningRateAt(const ScheduleConfig& schedule, double base_lr, int64_t step);

}  // namespace tb

#endif  // TIMEBALANCE_TRAIN_LR_SCHEDULE_H_
