// Multi-view pseudo-labeling over RGB and the temporal gradient (TG, frame
// differences of the same clip, T - 1 frames), after LTG's code (Xiao et
// al., CVPR 2022), registered twice with different reference defaults
// (MultiViewFixMatchOptions in semisup.proto):
//   tg_fixmatch  LTG's method: threshold 0.3, stage-wise feature alignment
//                with weight 1 (TG detached), a separate TG network, the
//                cross-view contrast between two heads at weight 0.5;
//   mvpl         LTG's MvPL configs: threshold 0.3, no alignment, one
//                network for all views, no contrast, plus the paper's
//                optical-flow view (Xiong et al., ICCV 2021: V + F + G).
// The loss is ComputeMultiViewLoss (semi_supervised.h). RGB and TG clips
// have different lengths, so each view is one forward pass (labeled, weak
// and strong clips of a view share BatchNorm statistics). Only the RGB
// network is evaluated, after precise BatchNorm statistics on RGB clips
// (PreciseBnReferenceBatches: LTG's precise_bn num_iters 200).
#include <tuple>
#include <utility>

#include <torch/nn/modules/conv.h>

#include "absl/strings/str_cat.h"
#include "backbones/heads.h"
#include "core/collectives.h"
#include "core/config_check.h"
#include "core/status_macros.h"
#include "core/torch_status.h"
#include "semisup/semi_supervised.h"

namespace tb {
namespace {

constexpr double kReferenceWeight = 1.0;
constexpr int kReferencePreciseBnBatches = 200;

struct MultiViewDefaults {
  const char* name;
  float threshold;
  float alignment;
  bool separate_tg_model;
  float contrast;
  bool flow_view;
};
constexpr MultiViewDefaults kTgFixMatch{"tg_fixmatch", 0.3f, 1.0f, true, 0.5f, false};
constexpr MultiViewDefaults kMvpl{"mvpl", 0.3f, 0.0f, false, 0.0f, true};

bool FlowView(const MultiViewFixMatchOptions& o, const MultiViewDefaults& d) {
  return o.has_flow_view() ? o.flow_view() : d.flow_view;
}

// The flow view's entry into the RGB network: a 1x1x1 convolution from the
// 2 flow channels to the 3 input channels, initialised to (x, y, 0).
torch::nn::Conv3d FlowInput() {
  torch::nn::Conv3d conv(torch::nn::Conv3dOptions(2, 3, 1));
  torch::NoGradGuard no_grad;
  conv->weight.zero_();
  conv->weight[0][0].fill_(1.0);
  conv->weight[1][1].fill_(1.0);
  conv->bias.zero_();
  return conv;
}

SamplerConfig WithFlow(SamplerConfig sampler, const MultiViewFixMatchOptions& o) {
  sampler.mutable_flow()->set_normalize(o.normalize_flow());
  return sampler;
}

float Alignment(const MultiViewFixMatchOptions& o, const MultiViewDefaults& d) {
  return o.has_feature_alignment_weight() ? o.feature_alignment_weight() : d.alignment;
}

bool SeparateTgModel(const MultiViewFixMatchOptions& o, const MultiViewDefaults& d) {
  return o.has_separate_tg_model() ? o.separate_tg_model() : d.separate_tg_model;
}

float ContrastWeight(const MultiViewFixMatchOptions& o, const MultiViewDefaults& d) {
  return o.cross_view_contrast().has_weight() ? o.cross_view_contrast().weight() : d.contrast;
}

// LTG's pair of ContrastHeads (CrossViewContrastOptions): one per view,
// linear layers without bias drawn from N(0, 0.01), BatchNorm + ReLU between
// them and an affine-free BatchNorm after the last. In a data-parallel run
// the embeddings of the global batch (LTG all-gathers them), so N ranks x
// B / N train as one process with B.
class CrossViewContrastHeadsImpl : public torch::nn::Module, public CollectiveUser {
 public:
  CrossViewContrastHeadsImpl(int64_t in, const CrossViewContrastOptions& o) {
    ProjectionHeadOptions h(in, o.out() > 0 ? o.out() : in);
    h.hidden_features = o.hidden() > 0 ? o.hidden() : in;
    h.num_layers = o.num_layers();
    h.final_batch_norm = true;
    h.final_batch_norm_affine = false;
    h.normalize = false;  // CrossViewContrastLoss normalises
    rgb_ = register_module("rgb", ProjectionHead(h));
    tg_ = register_module("tg", ProjectionHead(h));
    torch::NoGradGuard no_grad;
    for (torch::Tensor& p : parameters()) {
      if (p.dim() == 2) p.normal_(0.0, 0.01);  // LTG's init_std; BatchNorm keeps 1 / 0
    }
  }
  void SetCollectives(std::shared_ptr<Collectives> collectives) override {
    collectives_ = std::move(collectives);
  }
  // Pooled features [M, in] of the same clips in each view -> embeddings.
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& rgb,
                                                  const torch::Tensor& tg) {
    return {GlobalBatch(rgb_->forward(rgb), 0, collectives_.get()),
            GlobalBatch(tg_->forward(tg), 0, collectives_.get())};
  }

 private:
  ProjectionHead rgb_{nullptr}, tg_{nullptr};
  std::shared_ptr<Collectives> collectives_;
};
TORCH_MODULE(CrossViewContrastHeads);

class MultiViewFixMatchTrainer : public SemiSupervisedTrainer {
 public:
  // `tg_model` null: the TG view goes through `model`.
  MultiViewFixMatchTrainer(std::shared_ptr<VideoBackbone> model,
                           std::shared_ptr<VideoBackbone> tg_model,
                           const MultiViewFixMatchOptions& o, const MultiViewDefaults& d,
                           torch::Device device)
      : SemiSupervisedTrainer(std::move(model), device),
        tg_model_(std::move(tg_model)),
        name_(d.name),
        options_(o) {
    if (tg_model_) tg_model_->to(device_);
    loss_.threshold = ThresholdOr(o.pseudo_label(), d.threshold);
    loss_.source = o.pseudo_label_source();
    loss_.normalization = o.pseudo_label().normalization();
    loss_.view_weight = o.view_weight();
    loss_.alignment_weight = Alignment(o, d);
    loss_.alignment_features = o.alignment_features();
    loss_.detach_tg = o.alignment_detach_tg();
    loss_.strong_clips = o.views().strong_clips();
    loss_.contrast_weight = ContrastWeight(o, d);
    loss_.contrast_temperature = o.cross_view_contrast().temperature();
    if (loss_.contrast_weight > 0) {
      contrast_ = CrossViewContrastHeads(model_->feature_dim(), o.cross_view_contrast());
      contrast_->to(device_);
    }
    if (FlowView(o, d)) {
      flow_input_ = FlowInput();
      flow_input_->to(device_);
    }
  }

  SamplerConfig LabeledSampler() const override {
    return flow_input_ ? WithFlow(SamplerConfig(), options_) : SamplerConfig();
  }
  SamplerConfig UnlabeledSampler() const override {
    SamplerConfig s;
    *s.mutable_weak_strong() = options_.views();
    return flow_input_ ? WithFlow(s, options_) : s;
  }

  std::vector<torch::Tensor> TrainableParameters() override {
    std::vector<torch::Tensor> params = model_->parameters();
    if (tg_model_) {
      for (const torch::Tensor& p : tg_model_->parameters()) params.push_back(p);
    }
    for (torch::nn::Module* extra : ExtraModules()) {
      for (const torch::Tensor& p : extra->parameters()) params.push_back(p);
    }
    return params;
  }
  std::vector<std::pair<std::string, torch::nn::Module*>> CheckpointModules() override {
    std::vector<std::pair<std::string, torch::nn::Module*>> modules = {{"model", model_.get()}};
    if (tg_model_) modules.push_back({"tg_model", tg_model_.get()});
    if (contrast_) modules.push_back({"contrast_heads", contrast_.get()});
    if (flow_input_) modules.push_back({"flow_input", flow_input_.get()});
    return modules;
  }
  void SetTraining(bool training) override {
    model_->train(training);
    if (tg_model_) tg_model_->train(training);
    for (torch::nn::Module* extra : ExtraModules()) extra->train(training);
  }
  int PreciseBnReferenceBatches() const override { return kReferencePreciseBnBatches; }

  absl::StatusOr<StepResult> Step(const StepBatches& batches) override {
    ASSIGN_OR_RETURN(const ClipBatch* ub, Unlabeled(batches, name_));
    ASSIGN_OR_RETURN(torch::Tensor xl, LabeledClips(*batches.labeled));
    ASSIGN_OR_RETURN(torch::Tensor weak, BatchView(*ub, "weak", 1));
    ASSIGN_OR_RETURN(torch::Tensor strong, BatchView(*ub, "strong", loss_.strong_clips));
    std::vector<torch::Tensor> flow;  // labeled, weak, strong flow clips, or none
    if (flow_input_) {
      ASSIGN_OR_RETURN(torch::Tensor fl, BatchView(*batches.labeled, "clip_flow", 1));
      ASSIGN_OR_RETURN(torch::Tensor fw, BatchView(*ub, "weak_flow", 1));
      ASSIGN_OR_RETURN(torch::Tensor fs, BatchView(*ub, "strong_flow", loss_.strong_clips));
      flow = {fl, fw, fs};
    }
    return CallTorch(name_ + " step", [&] {
      const int64_t nl = xl.size(0), nu = weak.size(0);
      const torch::Tensor y = batches.labeled->labels.to(device_);
      const torch::Tensor rgb = torch::cat({xl, weak, strong}).to(device_);
      std::vector<torch::Tensor> inputs = {rgb, TemporalGradient(rgb)};
      std::vector<VideoBackbone*> models = {model_.get(),
                                            tg_model_ ? tg_model_.get() : model_.get()};
      if (!flow.empty()) {
        inputs.push_back(flow_input_->forward(torch::cat(flow).to(device_)));
        models.push_back(model_.get());
      }
      std::vector<MultiViewOutputs> views(inputs.size());
      for (size_t v = 0; v < views.size(); ++v) {
        views[v].stages = models[v]->StageFeatureMaps(inputs[v]);
        views[v].pooled = views[v].stages.back().mean({2, 3, 4});
        views[v].logits = models[v]->Logits(views[v].pooled);
      }
      if (contrast_) {  // on the labeled and weak clips (LTG's range 'weak')
        std::tie(views[0].contrast_embedding, views[1].contrast_embedding) =
            contrast_->forward(views[0].pooled.slice(0, 0, nl + nu),
                               views[1].pooled.slice(0, 0, nl + nu));
      }
      MultiViewLossOptions o = loss_;
      o.unlabeled_weight = UnlabeledWeight(options_.schedule(), kReferenceWeight, batches.step);
      const MultiViewLoss loss = ComputeMultiViewLoss(views, y, nl, nu, o);
      StepResult result;
      result.loss = loss.total;
      const char* names[3] = {"rgb", "tg", "flow"};
      for (size_t v = 0; v < views.size(); ++v) {
        result.metrics[std::string("loss_ce_") + names[v]] = loss.ce[v].item<double>();
        result.metrics[std::string("loss_u_") + names[v]] = loss.unlabeled[v].item<double>();
        result.metrics[std::string("train_top1_") + names[v]] =
            Top1(views[v].logits.slice(0, 0, nl), y);
      }
      if (loss.alignment.defined()) {
        result.metrics["loss_align"] = loss.alignment.item<double>();
        for (size_t s = 0; s < loss.alignment_stages.size() && loss.alignment_stages.size() > 1;
             ++s) {
          result.metrics[absl::StrCat("loss_align_stage", s + 1)] =
              loss.alignment_stages[s].item<double>();
        }
      }
      if (loss.contrast.defined()) result.metrics["loss_contrast"] = loss.contrast.item<double>();
      result.metrics["weight_u"] = o.unlabeled_weight;
      AddPseudoLabelMetrics(loss.pseudo_labels, ub->labels, "", &result.metrics);
      return result;
    });
  }

 private:
  // The optional modules besides the networks (contrast heads, flow input).
  std::vector<torch::nn::Module*> ExtraModules() {
    std::vector<torch::nn::Module*> modules;
    if (contrast_) modules.push_back(contrast_.get());
    if (flow_input_) modules.push_back(flow_input_.get());
    return modules;
  }

  std::shared_ptr<VideoBackbone> tg_model_;
  std::string name_;
  MultiViewFixMatchOptions options_;
  MultiViewLossOptions loss_;
  CrossViewContrastHeads contrast_{nullptr};  // null when the weight is 0
  torch::nn::Conv3d flow_input_{nullptr};     // null without the flow view
};

absl::Status ValidateMultiView(const MultiViewFixMatchOptions& o, const TrainerScope& scope,
                               const MultiViewDefaults& d) {
  FieldChecker c(scope.path);
  c.Merge(ValidateSemiSupervised(o, scope));
  c.Require(Alignment(o, d) >= 0, "feature_alignment_weight", Alignment(o, d), "must be >= 0");
  c.Require(o.view_weight() > 0, "view_weight", o.view_weight(), "must be > 0");
  const CrossViewContrastOptions& x = o.cross_view_contrast();
  c.Require(ContrastWeight(o, d) >= 0, "cross_view_contrast.weight", ContrastWeight(o, d),
            "must be >= 0");
  c.Require(x.temperature() > 0, "cross_view_contrast.temperature", x.temperature(),
            "must be > 0");
  c.Require(x.hidden() >= 0, "cross_view_contrast.hidden", x.hidden(),
            "must be >= 0 (0 = the backbone's feature dimension)");
  c.Require(x.out() >= 0, "cross_view_contrast.out", x.out(),
            "must be >= 0 (0 = the backbone's feature dimension)");
  c.Require(x.num_layers() >= 1, "cross_view_contrast.num_layers", x.num_layers(),
            "must be >= 1");
  c.Fail(scope.dataset.clip().num_frames() < 2, "",
         absl::StrCat("the temporal gradient needs dataset.clip.num_frames >= 2, got ",
                      scope.dataset.clip().num_frames()));
  return c.status();
}

absl::StatusOr<std::unique_ptr<Trainer>> CreateMultiView(const MultiViewFixMatchOptions& o,
                                                         const TrainerContext& context,
                                                         const MultiViewDefaults& d) {
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> model, context.CreateModel());
  std::shared_ptr<VideoBackbone> tg_model;
  if (SeparateTgModel(o, d)) {
    ASSIGN_OR_RETURN(tg_model, context.CreateModel());
  }
  return std::unique_ptr<Trainer>(new MultiViewFixMatchTrainer(
      std::move(model), std::move(tg_model), o, d, context.device));
}

absl::Status ValidateTgFixMatch(const MultiViewFixMatchOptions& o, const TrainerScope& scope) {
  return ValidateMultiView(o, scope, kTgFixMatch);
}
absl::StatusOr<std::unique_ptr<Trainer>> CreateTgFixMatch(const MultiViewFixMatchOptions& o,
                                                          const TrainerContext& context) {
  return CreateMultiView(o, context, kTgFixMatch);
}
absl::Status ValidateMvpl(const MultiViewFixMatchOptions& o, const TrainerScope& scope) {
  return ValidateMultiView(o, scope, kMvpl);
}
absl::StatusOr<std::unique_ptr<Trainer>> CreateMvpl(const MultiViewFixMatchOptions& o,
                                                    const TrainerContext& context) {
  return CreateMultiView(o, context, kMvpl);
}

}  // namespace

TB_REGISTER_COMPONENT(TrainerRegistry(), tg_fixmatch, ValidateTgFixMatch, CreateTgFixMatch);
TB_REGISTER_COMPONENT(TrainerRegistry(), mvpl, ValidateMvpl, CreateMvpl);

}  // namespace tb
