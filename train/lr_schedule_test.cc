#include "train/lr_schedule.h"

#include <cmath>

#include <gtest/gtest.h>

namespace tb {
namespace {

TEST(LrSchedule, WarmupThenCosine) {
  ScheduleConfig s;
  s.set_steps(110);
  s.set_warmup_steps(10);
  s.mutable_cosine()->set_final_fraction(0.0f);
  EXPECT_NEAR(LearningRateAt(s, 1.0, 0), 1.0 / 11, 1e-9);
  EXPECT_NEAR(LearningRateAt(s, 1.0, 9), 10.0 / 11, 1e-9);
  EXPECT_NEAR(LearningRateAt(s, 1.0, 10), 1.0, 1e-9);
  EXPECT_NEAR(LearningRateAt(s, 1.0, 60), 0.5, 1e-9);
  EXPECT_NEAR(LearningRateAt(s, 1.0, 35), 0.5 * (1 + std::cos(M_PI * 0.25)), 1e-9);
  EXPECT_NEAR(LearningRateAt(s, 1.0, 110), 0.0, 1e-9);
  s.mutable_cosine()->set_final_fraction(0.1f);
  EXPECT_NEAR(LearningRateAt(s, 2.0, 110), 0.2, 1e-6);
}

TEST(LrSchedule, StepAndConstant) {
  ScheduleConfig s;
  s.set_steps(100);
  s.mutable_step()->add_at_steps(30);
  s.mutable_step()->add_at_steps(60);
  s.mutable_step()->set_factor(0.1f);
  EXPECT_NEAR(LearningRateAt(s, 1.0, 29), 1.0, 1e-9);
  EXPECT_NEAR(LearningRateAt(s, 1.0, 30), 0.1, 1e-7);
  EXPECT_NEAR(LearningRateAt(s, 1.0, 99), 0.01, 1e-7);
  s.mutable_constant();
  EXPECT_NEAR(LearningRateAt(s, 0.3, 99), 0.3, 1e-9);
}

}  // namespace
}  // namespace tb
