// File: semisup/tcl_trainer.h
//
// TCL's losses (Singh et al., CVPR 2021; TclOptions in semisup.proto says
// what the registered `tcl` trainer computes and which official code it
// follows). Exposed for semisup/tcl_trainer_test.cc, which checks them
// against semisup/testdata/tcl_reference.py.
#ifndef TIMEBALANCE_SEMISUP_TCL_TRAINER_H_
#define TIMEBALANCE_SEMISUP_TCL_TRAINER_H_

#include <torch/types.h>

#include <cstdint>

namespace tb {

// TCL's group contrastive loss. p_base, p_slow: [N, C] class distributions
// of the same N unlabeled videos at the two speeds. Each speed groups its
// videos by its own argmax; for every class c that is the argmax of at least
// one video in both speeds, g_base[c] and g_slow[c] are the means of the
// distributions of that class's group. With the K such classes in
// increasing order,
//   L_gc = ssl::NtXent(g_base, g_slow, temperature)      ([K, C] each)
// (0 when K <= 1: a single group has no negative). `detach_base` stops the
// gradient into p_base, as the official code does. `groups`, when not
// null, receives K.
torch::Tensor GroupContrastiveLoss(const torch::Tensor& p_base, const torch::Tensor& p_slow,
                                   double temperature, bool detach_base = true,
                                   int64_t* groups = nullptr);

}  // namespace tb

#endif  // TIMEBALANCE_SEMISUP_TCL_TRAINER_H_
