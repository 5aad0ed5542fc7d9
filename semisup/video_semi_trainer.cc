// VideoSSL (Jing et al., WACV 2021), registered as `video_semi`
// (VideoSemiOptions in semisup.proto: the phases and the loss of each;
// docs/BASELINES.md: what the paper says and what differs). The video model
// f learns from the labels, from its own confident predictions on unlabeled
// clips, and from an image classifier g's class distribution on the clips'
// frames (the "appearance" of the objects in the video), distilled into an
// extra linear head h on f's pooled features. Where no image weights exist
// (SynthActions), g is trained on the labeled videos' frames during the
// supervised warm-up and frozen afterwards.
//
// Example config:
//   trainer {
//     video_semi { schedule { warmup_steps: 100 }
//                  image_backbone { tsm_r18 { width_multiplier: 0.125 shift_div: 1024 } } }
//     labeled_batch_size: 8 unlabeled_batch_size: 8
//   }
#include "semisup/video_semi_trainer.h"

#include <torch/nn/functional/loss.h>
#include <torch/nn/modules/linear.h>

#include "absl/strings/str_cat.h"
#include "core/config_check.h"
#include "core/status_macros.h"
#include "core/torch_status.h"

namespace tb {

std::vector<int64_t> ImageFrameIndices(int64_t num_frames, int64_t count) {
  std::vector<int64_t> frames;
  if (count <= 0 || count >= num_frames) {
    for (int64_t t = 0; t < num_frames; ++t) frames.push_back(t);
    return frames;
  }
  for (int64_t i = 0; i < count; ++i) frames.push_back(((2 * i + 1) * num_frames) / (2 * count));
  return frames;
}

torch::Tensor ImageFrameLogits(VideoBackbone& image_model, const torch::Tensor& clips,
                               const std::vector<int64_t>& frames) {
  TORCH_CHECK(clips.dim() == 5, "ImageFrameLogits expects clips [B, 3, T, H, W], got ",
              clips.sizes());
  TORCH_CHECK(!frames.empty(), "ImageFrameLogits: no frames selected");
  const int64_t b = clips.size(0), f = static_cast<int64_t>(frames.size());
  const torch::Tensor index =
      torch::tensor(frames, torch::TensorOptions().dtype(torch::kLong)).to(clips.device());
  // [B, 3, F, H, W] -> [B, F, 3, H, W] -> B * F one-frame clips [B*F, 3, 1, H, W].
  const torch::Tensor x = clips.index_select(2, index)
                              .transpose(1, 2)
                              .reshape({b * f, clips.size(1), clips.size(3), clips.size(4)})
                              .unsqueeze(2);
  const torch::Tensor logits = image_model.forward(x);
  return logits.view({b, f, logits.size(1)});
}

torch::Tensor AppearanceTargets(const torch::Tensor& frame_logits, double temperature) {
  TORCH_CHECK(frame_logits.dim() == 3, "AppearanceTargets expects frame logits [B, F, K], got ",
              frame_logits.sizes());
  return torch::softmax(frame_logits / temperature, 2).mean(1);
}

torch::Tensor AppearanceDistillationLoss(const torch::Tensor& logits, const torch::Tensor& targets,
                                         double temperature) {
  TORCH_CHECK(logits.dim() == 2 && logits.sizes() == targets.sizes(),
              "AppearanceDistillationLoss: logits ", logits.sizes(), " and targets ",
              targets.sizes(), " must be the same [B, K]");
  const torch::Tensor log_p = torch::log_softmax(logits / temperature, 1);
  const torch::Tensor q = targets.detach().to(log_p.scalar_type());
  // xlogy(0, 0) = 0: classes the target gives no mass add nothing.
  const torch::Tensor kl = (torch::xlogy(q, q) - q * log_p).sum(1).mean();
  return (temperature * temperature) * kl;
}

VideoSemiLoss ComputeVideoSemiLoss(const torch::Tensor& logits, const torch::Tensor& labels,
                                   const torch::Tensor& appearance_logits,
                                   const torch::Tensor& appearance_targets,
                                   const VideoSemiLossOptions& options) {
  const int64_t nl = labels.size(0);
  TORCH_CHECK(logits.dim() == 2 && logits.size(0) > nl, "ComputeVideoSemiLoss: logits ",
              logits.sizes(), " must hold the ", nl, " labeled rows and at least one unlabeled");
  VideoSemiLoss out;
  const torch::Tensor logits_l = logits.slice(0, 0, nl);
  const torch::Tensor logits_u = logits.slice(0, nl);
  out.ce = torch::nn::functional::cross_entropy(logits_l, labels);
  out.pseudo_labels = MakePseudoLabels(torch::softmax(logits_u, 1), options.threshold);
  out.pseudo_label = PseudoLabelLoss(logits_u, out.pseudo_labels, options.normalization);
  out.total = out.ce + options.pseudo_label_weight * out.pseudo_label;
  if (appearance_logits.defined()) {
    out.appearance =
        AppearanceDistillationLoss(appearance_logits, appearance_targets, options.temperature);
    out.total = out.total + options.appearance_weight * out.appearance;
  }
  return out;
}

BackboneConfig VideoSemiImageBackbone(const VideoSemiOptions& options) {
  if (options.has_image_backbone()) return options.image_backbone();
  BackboneConfig config;
  config.mutable_tsm_r18()->set_shift_div(1024);
  return config;
}

namespace {

constexpr float kReferenceThreshold = 0.95f;  // as the `pseudo_label` trainer's
constexpr double kReferenceWeight = 1.0;

class VideoSemiTrainer : public SemiSupervisedTrainer {
 public:
  // `train_image`: the image model is trained on labeled frames during the
  // warm-up (no image checkpoint); otherwise it arrives frozen.
  VideoSemiTrainer(std::shared_ptr<VideoBackbone> model, std::shared_ptr<VideoBackbone> image_model,
                   bool train_image, const VideoSemiOptions& o, int64_t num_frames,
                   torch::Device device)
      : SemiSupervisedTrainer(std::move(model), device),
        image_model_(std::move(image_model)),
        train_image_(train_image),
        options_(o),
        frames_(ImageFrameIndices(num_frames, o.image_frames())) {
    image_model_->to(device_);
    head_ = torch::nn::Linear(model_->feature_dim(), image_model_->num_classes());
    head_->to(device_);
    if (!train_image_) Freeze();
  }

  std::vector<torch::Tensor> TrainableParameters() override {
    std::vector<torch::Tensor> params = model_->parameters();
    for (const torch::Tensor& p : head_->parameters()) params.push_back(p);
    if (train_image_) {
      for (const torch::Tensor& p : image_model_->parameters()) params.push_back(p);
    }
    return params;
  }

  std::vector<std::pair<std::string, torch::nn::Module*>> CheckpointModules() override {
    return {{"model", model_.get()},
            {"appearance_head", head_.get()},
            {"image_model", image_model_.get()}};
  }

  void SetTraining(bool training) override {
    model_->train(training);
    head_->train(training);
    image_model_->train(training && image_trainable_);
  }

  absl::StatusOr<StepResult> Step(const StepBatches& batches) override {
    ASSIGN_OR_RETURN(const ClipBatch* ub, Unlabeled(batches, "video_semi"));
    ASSIGN_OR_RETURN(torch::Tensor xl, LabeledClips(*batches.labeled));
    ASSIGN_OR_RETURN(torch::Tensor xu, LabeledClips(*ub));
    return CallTorch("video_semi step", [&] {
      const bool warm = batches.step < options_.schedule().warmup_steps();
      if (!warm && image_trainable_) Freeze();  // the image model is done after the warm-up
      const int64_t nl = xl.size(0);
      const torch::Tensor y = batches.labeled->labels.to(device_);
      const torch::Tensor x = torch::cat({xl, xu}).to(device_);
      const torch::Tensor features = model_->Features(x);
      torch::Tensor logits = model_->Logits(features);
      if (logits.scalar_type() != torch::kDouble) logits = logits.to(torch::kFloat);
      StepResult result;
      result.metrics["train_top1"] = Top1(logits.slice(0, 0, nl), y);
      if (warm) {
        const torch::Tensor ce = torch::nn::functional::cross_entropy(logits.slice(0, 0, nl), y);
        result.loss = ce;
        result.metrics["loss_ce"] = ce.item<double>();
        if (image_trainable_) result.loss = ce + ImageModelLoss(xl.to(device_), y, &result);
        return result;
      }
      // The ramp of both unlabeled terms (0 to 1; 1 without ramp-up).
      UnlabeledSchedule unit = options_.schedule();
      unit.set_weight(1.0f);
      const double ramp = UnlabeledWeight(unit, 1.0, batches.step);
      VideoSemiLossOptions lo;
      lo.threshold = ThresholdOr(options_.pseudo_label(), kReferenceThreshold);
      lo.normalization = options_.pseudo_label().normalization();
      lo.pseudo_label_weight = UnlabeledWeight(options_.schedule(), kReferenceWeight, batches.step);
      lo.appearance_weight = options_.appearance_weight() * ramp;
      lo.temperature = options_.temperature();
      torch::Tensor appearance_logits, targets;
      if (options_.appearance_weight() > 0) {
        // The clips the appearance is distilled into: all, or the unlabeled.
        const int64_t from = options_.appearance_on_labeled() ? 0 : nl;
        {
          torch::NoGradGuard no_grad;
          targets = AppearanceTargets(
              ImageFrameLogits(*image_model_, x.slice(0, from), frames_).to(torch::kFloat),
              options_.temperature());
        }
        appearance_logits = head_->forward(features.slice(0, from));
        if (appearance_logits.scalar_type() != torch::kDouble) {
          appearance_logits = appearance_logits.to(torch::kFloat);
        }
      }
      const VideoSemiLoss loss = ComputeVideoSemiLoss(logits, y, appearance_logits, targets, lo);
      result.loss = loss.total;
      result.metrics["loss_ce"] = loss.ce.item<double>();
      result.metrics["loss_pl"] = loss.pseudo_label.item<double>();
      result.metrics["weight_pl"] = lo.pseudo_label_weight;
      if (loss.appearance.defined()) {
        result.metrics["loss_appearance"] = loss.appearance.item<double>();
        result.metrics["weight_appearance"] = lo.appearance_weight;
      }
      AddPseudoLabelMetrics(loss.pseudo_labels, ub->labels.to(device_), "", &result.metrics);
      return result;
    });
  }

 private:
  // CE of the image model on every selected frame of the labeled clips
  // `xl` (each frame labeled with its video's label), the mean over frames.
  torch::Tensor ImageModelLoss(const torch::Tensor& xl, const torch::Tensor& y,
                               StepResult* result) {
    const torch::Tensor frame_logits = ImageFrameLogits(*image_model_, xl, frames_);
    const int64_t f = frame_logits.size(1);
    torch::Tensor flat = frame_logits.reshape({-1, frame_logits.size(2)});
    if (flat.scalar_type() != torch::kDouble) flat = flat.to(torch::kFloat);
    const torch::Tensor frame_labels = y.repeat_interleave(f);
    const torch::Tensor loss = torch::nn::functional::cross_entropy(flat, frame_labels);
    result->metrics["loss_image_ce"] = loss.item<double>();
    result->metrics["image_train_top1"] = Top1(flat, frame_labels);
    return loss;
  }

  // Eval mode, no gradients, and no gradient left for the optimizer (an
  // undefined gradient is skipped by Adam and SGD; LibTorch's zero_grad
  // would otherwise keep a zero one that momentum and weight decay act on).
  void Freeze() {
    image_trainable_ = false;
    image_model_->eval();
    for (torch::Tensor& p : image_model_->parameters()) {
      p.set_requires_grad(false);
      if (p.grad().defined()) p.mutable_grad() = torch::Tensor();
    }
  }

  std::shared_ptr<VideoBackbone> image_model_;
  torch::nn::Linear head_{nullptr};  // the appearance head h
  bool train_image_;
  bool image_trainable_ = true;  // until the warm-up ends (or from the start without train_image_)
  VideoSemiOptions options_;
  std::vector<int64_t> frames_;  // the frames of a clip the image model sees
};

absl::Status ValidateVideoSemi(const VideoSemiOptions& o, const TrainerScope& scope) {
  FieldChecker c(scope.path);
  c.Merge(ValidateSemiSupervised(o, scope));
  c.Require(o.appearance_weight() >= 0, "appearance_weight", o.appearance_weight(),
            "must be >= 0");
  c.Require(o.temperature() > 0, "temperature", o.temperature(), "must be > 0");
  const int frames = scope.dataset.clip().num_frames();
  c.Require(o.image_frames() >= 0 && o.image_frames() <= frames, "image_frames", o.image_frames(),
            absl::StrCat("must be in [0, dataset.clip.num_frames (", frames, ")]"));
  c.Require(!o.image_model().empty() || o.schedule().warmup_steps() > 0, "schedule.warmup_steps",
            o.schedule().warmup_steps(),
            "must be > 0 without image_model: the image model is trained on the labeled "
            "frames during the warm-up");
  if (o.has_image_backbone()) {
    c.Merge(ValidateBackbone(o.image_backbone(), c.Path("image_backbone")));
  }
  const BackboneConfig image = VideoSemiImageBackbone(o);
  if (image.has_tsm_r18()) {
    const int64_t widest = ScaledWidth(512, image.tsm_r18().width_multiplier());
    c.Require(image.tsm_r18().shift_div() > widest, "image_backbone.tsm_r18.shift_div",
              image.tsm_r18().shift_div(),
              absl::StrCat("must exceed the widest stage (", widest,
                           " channels) so that no channel is shifted: the image model sees "
                           "one frame at a time"));
  }
  return c.status();
}

absl::StatusOr<std::unique_ptr<Trainer>> CreateVideoSemi(const VideoSemiOptions& o,
                                                         const TrainerContext& context) {
  const BackboneConfig image_config = VideoSemiImageBackbone(o);
  std::shared_ptr<VideoBackbone> image_model;
  const bool train_image = o.image_model().empty();
  if (train_image) {
    ASSIGN_OR_RETURN(image_model, context.CreateModel(image_config));
  } else {
    ASSIGN_OR_RETURN(image_model, LoadFrozenModel(context, &image_config, o.image_model(),
                                                  context.path + ".image_model"));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> model, context.CreateModel());
  return CallTorch("building video_semi", [&]() -> std::unique_ptr<Trainer> {
    return std::unique_ptr<Trainer>(new VideoSemiTrainer(
        std::move(model), std::move(image_model), train_image, o,
        context.dataset.clip().num_frames(), context.device));
  });
}

}  // namespace

TB_REGISTER_COMPONENT(TrainerRegistry(), video_semi, ValidateVideoSemi, CreateVideoSemi);

}  // namespace tb
