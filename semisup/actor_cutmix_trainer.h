// File: semisup/actor_cutmix_trainer.h
//
// ActorCutMix's clip mixing and targets (ActorCutMixOptions in semisup.proto
// says what the registered `actor_cutmix` trainer computes and which
// official code it follows). Exposed for semisup/actor_cutmix_trainer_test.cc.
#ifndef TIMEBALANCE_SEMISUP_ACTOR_CUTMIX_TRAINER_H_
#define TIMEBALANCE_SEMISUP_ACTOR_CUTMIX_TRAINER_H_

#include <torch/types.h>

#include <cstdint>

namespace tb {

struct ActorCutMixBatch {
  torch::Tensor clips;           // [N, C, T, H, W]: the cut-mixed clips
  torch::Tensor valid;           // [N] bool: clips that were mixed
  torch::Tensor actor_fraction;  // [N]: r_i, the actor's share (1 where not valid)
};

// Pastes the actor of clip i (mask [N, 1, T, H, W], 1 = actor) onto the
// background of clip N - 1 - i:
//   clips_i = x_i * m_i + flip(x * (1 - m))_i * (1 - m_i).
// A clip is valid when its mask is neither empty nor full, and N is even or
// i is not the middle clip; invalid clips get m = 1 (they stay themselves).
ActorCutMixBatch MixActors(const torch::Tensor& x, const torch::Tensor& masks);

// The soft targets [N, num_classes] of mixed clips: w_i onehot(labels_i) +
// (1 - w_i) onehot(labels_{N-1-i}), w_i = 1 - (actor_fraction_i - 1)^4.
torch::Tensor ActorCutMixTargets(const torch::Tensor& labels, const torch::Tensor& actor_fraction,
                                 int64_t num_classes);

// Whether the strong views of optimizer step `step` are cut-mixed: a
// deterministic draw from the step (the same after a resume), true with
// `probability`.
bool ActorCutMixThisStep(int64_t step, double probability);

}  // namespace tb

#endif  // TIMEBALANCE_SEMISUP_ACTOR_CUTMIX_TRAINER_H_
