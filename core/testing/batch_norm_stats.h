// File: core/testing/batch_norm_stats.h
//
// Makes a freshly built model's BatchNorms look trained, so a test of
// BatchNorm folding has something to fold: running means uniform in
// [-0.5, 0.5], running variances uniform in [0.5, 2] (drawn from the torch
// CPU generator; seed it for reproducible values).
#ifndef TIMEBALANCE_CORE_TESTING_BATCH_NORM_STATS_H_
#define TIMEBALANCE_CORE_TESTING_BATCH_NORM_STATS_H_

#include <torch/nn/module.h>

namespace tb::testing {

void RandomizeBatchNormStatistics(torch::nn::Module& model);

}  // namespace tb::testing

#endif  // TIMEBALANCE_CORE_TESTING_BATCH_NORM_STATS_H_
