// File: semisup/timebalance_trainer.h
//
// TimeBalance's student distillation (Dave et al., CVPR 2023), registered as
// the `timebalance` trainer (TimeBalanceOptions in semisup.proto). Two
// fine-tuned teachers, frozen (eval mode, requires_grad off, never in the
// optimizer, forward under NoGradGuard), produce
//   p_T(x) = s_v * softmax(f_I(x)) + (1 - s_v) * softmax(f_D(x))
// for the very clip the student sees, with s_v the video's weight from the
// scores file. The student's loss is
//   CE(f_S(x_l), y) + labeled_weight * D(softmax(f_S(x_l)), p_T(x_l))
//                   + unlabeled_weight * D(softmax(f_S(x_u)), p_T(x_u)),
// D = element-wise MSE (default), KL(p_T || p_S) with the official code's
// element-wise mean (divided by B * C), or the per-clip KL (KL_BATCHMEAN)
// (TimeBalanceOptions.Distance; DistillationStep in semi_supervised.h). The student's labeled and unlabeled clips go through it
// in one forward pass (shared BatchNorm statistics). Logged: each term, the
// mixture's accuracy on the labeled clips (teacher_top1_l), and its
// pseudo-label accuracy on the unlabeled clips against their hidden labels
// (pl_acc_all).
//
// The teachers run as inference (backbones/inference_model.h): InferenceMode,
// BatchNorms folded into the convolutions (fold_teachers), optionally
// channels-last-3d, in the precision of teacher_precision.
//
// Example config (the pipeline fills the teachers and scores):
//   trainer { timebalance { labeled_weight: 50 unlabeled_weight: 100 }
//             labeled_batch_size: 8 unlabeled_batch_size: 8 }
#ifndef TIMEBALANCE_SEMISUP_TIMEBALANCE_TRAINER_H_
#define TIMEBALANCE_SEMISUP_TIMEBALANCE_TRAINER_H_

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "backbones/inference_model.h"
#include "semisup/semisup.pb.h"
#include "train/api/trainer.h"

namespace tb {

// p_T = s * p_i + (1 - s) * p_d, s: [B], p_*: [B, C].
torch::Tensor MixTeachers(const torch::Tensor& p_invariant, const torch::Tensor& p_distinctive,
                          const torch::Tensor& weights);

class TimeBalanceTrainer : public Trainer {
 public:
  // Takes the teachers over (each must be used by nobody else: they are
  // folded in place) and prepares them as the options say. Errors:
  // FailedPrecondition for a shared teacher, those of InferenceModel::Adopt
  // otherwise.
  static absl::StatusOr<std::unique_ptr<TimeBalanceTrainer>> Create(
      std::shared_ptr<VideoBackbone> student, std::shared_ptr<VideoBackbone> invariant,
      std::shared_ptr<VideoBackbone> distinctive, std::map<std::string, float> scores,
      const TimeBalanceOptions& options, torch::Device device);

  // The teachers' softmax probabilities (fp32) on clips x: {invariant,
  // distinctive}.
  absl::StatusOr<std::pair<torch::Tensor, torch::Tensor>> TeacherProbabilities(
      const torch::Tensor& x);

  absl::StatusOr<StepResult> Step(const StepBatches& batches) override;
  std::vector<torch::Tensor> TrainableParameters() override { return student_->parameters(); }
  std::vector<std::pair<std::string, torch::nn::Module*>> CheckpointModules() override {
    return {{"model", student_.get()}};
  }
  VideoBackbone& EvaluationModel() override { return *student_; }
  bool NeedsUnlabeled() const override { return true; }
  void SetTraining(bool training) override;

  const InferenceModel& invariant_teacher() const { return invariant_; }
  const InferenceModel& distinctive_teacher() const { return distinctive_; }

 private:
  TimeBalanceTrainer(std::shared_ptr<VideoBackbone> student, InferenceModel invariant,
                     InferenceModel distinctive, std::map<std::string, float> scores,
                     const TimeBalanceOptions& options, torch::Device device);
  absl::StatusOr<torch::Tensor> Weights(const ClipBatch& batch) const;

  std::shared_ptr<VideoBackbone> student_;
  InferenceModel invariant_, distinctive_;
  std::map<std::string, float> scores_;
  TimeBalanceOptions options_;
  torch::Device device_;
};

}  // namespace tb

#endif  // TIMEBALANCE_SEMISUP_TIMEBALANCE_TRAINER_H_
