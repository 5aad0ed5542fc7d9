// File: backbones/backbone.h
//
// The interface every video backbone implements, and the registry that
// builds one from a BackboneConfig. A backbone maps a clip [B, 3, T, H, W]
// (float, normalised) to a feature map [B, D, T', H', W'], a pooled feature
// [B, D], and class logits [B, num_classes] through its own classifier head,
// which is part of the module so that parameter names match the reference
// PyTorch models (torchvision's `fc`).
#ifndef TIMEBALANCE_BACKBONES_BACKBONE_H_
#define TIMEBALANCE_BACKBONES_BACKBONE_H_

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/types.h>

#include <functional>
#include <map>
#include <array>
#include <memory>
#include <vector>
#include <string>

#include "absl/status/statusor.h"
#include "backbones/backbones.pb.h"
#include "core/config_check.h"
#include "core/registry.h"

namespace tb {

class VideoBackbone : public torch::nn::Module {
 public:
  // Last stage's feature map [B, D, T', H', W'].
  virtual torch::Tensor FeatureMap(const torch::Tensor& clip) = 0;
  // The output of every residual stage, first to last (the last equals
  // FeatureMap), for losses that align intermediate features. Backbones
  // without stages return just FeatureMap.
  virtual std::vector<torch::Tensor> StageFeatureMaps(const torch::Tensor& clip) {
    return {FeatureMap(clip)};
  }
  // Classifier head (dropout + linear) on pooled features [B, D].
  virtual torch::Tensor Logits(const torch::Tensor& features) = 0;
  virtual int64_t feature_dim() const = 0;
  virtual int64_t num_classes() const = 0;

  // Global average pool of the feature map: [B, D].
  torch::Tensor Features(const torch::Tensor& clip);
  // Logits of a clip batch: Logits(Features(clip)).
  torch::Tensor forward(const torch::Tensor& clip) { return Logits(Features(clip)); }
};

// Runs the residual `stages` on `x` in order and returns the last output;
// with `outputs`, also appends every stage's output to it. Shared by the
// ResNet-style backbones' FeatureMap and StageFeatureMaps.
torch::Tensor RunStages(torch::Tensor x, std::array<torch::nn::Sequential, 4>& stages,
                        std::vector<torch::Tensor>* outputs);

// Torchvision-layout residual networks: a stem, four stages "layer1".."layer4",
// dropout and a linear "fc" on globally pooled features. Subclasses build the
// stem and the stages and hand them to Assemble(), which registers them in
// torchvision's order (so parameter names and order match the reference).
class ResNetBackbone : public VideoBackbone {
 public:
  torch::Tensor FeatureMap(const torch::Tensor& clip) override {
    return RunStages(stem_(clip), stages_, nullptr);
  }
  std::vector<torch::Tensor> StageFeatureMaps(const torch::Tensor& clip) override {
    std::vector<torch::Tensor> outputs;
    RunStages(stem_(clip), stages_, &outputs);
    return outputs;
  }
  torch::Tensor Logits(const torch::Tensor& features) override {
    return fc_->forward(dropout_->forward(features));
  }
  int64_t feature_dim() const override { return feature_dim_; }
  int64_t num_classes() const override { return num_classes_; }

 protected:
  ResNetBackbone(int64_t num_classes, int64_t feature_dim)
      : num_classes_(num_classes), feature_dim_(feature_dim) {}

  template <typename StemHolder>
  void Assemble(StemHolder stem, const std::array<torch::nn::Sequential, 4>& stages,
                double dropout) {
    auto registered = register_module("stem", stem);
    stem_ = [registered](const torch::Tensor& x) -> torch::Tensor {
      return registered->forward(x);
    };
    for (int s = 0; s < 4; ++s) {
      stages_[s] = register_module("layer" + std::to_string(s + 1), stages[s]);
    }
    dropout_ = register_module("dropout", torch::nn::Dropout(dropout));
    fc_ = register_module("fc", torch::nn::Linear(feature_dim_, num_classes_));
  }

 private:
  int64_t num_classes_;
  int64_t feature_dim_;
  std::function<torch::Tensor(const torch::Tensor&)> stem_;
  std::array<torch::nn::Sequential, 4> stages_{nullptr, nullptr, nullptr, nullptr};
  torch::nn::Dropout dropout_{nullptr};
  torch::nn::Linear fc_{nullptr};
};

// torchvision's BasicBlock around given convolutions: conv1 (conv, BN,
// ReLU), conv2 (conv, BN) and an optional downsample shortcut (1x1x1 conv,
// BN); out = relu(conv2(conv1(x)) + shortcut(x)). The three are Sequentials
// because torchvision's are: child indices are part of the parameter names
// ("conv1.0.weight", "conv1.1.running_mean"). R3D and R(2+1)D differ only in
// the convolutions they pass.
struct BasicBlockImpl : torch::nn::Module {
  // `downsample` may be null (identity shortcut).
  BasicBlockImpl(torch::nn::Sequential conv1, torch::nn::Sequential conv2,
                 torch::nn::Sequential downsample);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Sequential conv1{nullptr};
  torch::nn::Sequential conv2{nullptr};
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(BasicBlock);

// Backbones are validated on their own options (scope path "backbone" or
// e.g. "trainer.timebalance.teacher_backbone") and created from them with
// the whole BackboneConfig as context (num_classes, dropout).
using BackboneRegistryType = ComponentRegistry<VideoBackbone, ConfigScope, BackboneConfig>;
BackboneRegistryType& BackboneRegistry();

// Checks `config` where it sits at `path`: the fields every backbone shares
// (num_classes >= 0, 0 meaning "from the dataset"; dropout in [0, 1)) and the
// selected backbone's own options.
absl::Status ValidateBackbone(const BackboneConfig& config, const std::string& path);

// Builds the backbone whose options field is set in `config` after
// ValidateBackbone(config, "backbone"); `config.num_classes()` must be > 0
// here (resolved from the dataset). Errors name the field (InvalidArgument)
// or list the registered backbones (NotFound).
absl::StatusOr<std::shared_ptr<VideoBackbone>> CreateBackbone(const BackboneConfig& config);

// The check every width_multiplier field gets: in (0, 8].
void CheckWidthMultiplier(float width_multiplier, FieldChecker* checker);

// The channel count of a stage of `base` channels at `width_multiplier`
// (rounded to nearest, at least 1).
int64_t ScaledWidth(int64_t base, double width_multiplier);

int64_t CountParameters(const torch::nn::Module& module);

// torchvision's VideoResNet initialisation (Kaiming-normal fan-out convolution
// weights, BN weight 1 / bias 0, linear N(0, 0.01) / bias 0) for every Conv3d,
// BatchNorm3d and Linear below `root`, so that training from scratch starts
// from the reference distribution.
void InitVideoResNetWeights(torch::nn::Module& root);

// Converts every 5-D parameter and buffer of `module` to channels-last-3d and
// every 4-D one (2-D convolutions, e.g. TSM) to channels-last, in place.
// Convolutions then produce channels-last outputs whatever the input layout.
void ToChannelsLast(torch::nn::Module& module);


// Every parameter and buffer of `module` by its dotted name (the same names
// as PyTorch's `state_dict()`). The tensors alias the module's storage.
std::map<std::string, torch::Tensor> ModuleStateDict(const torch::nn::Module& module);

// Copies `state` into the module's parameters and buffers by name, converting
// dtype where needed. Nothing is copied unless every check passes, so a failed
// load leaves the module untouched. Shape mismatches are always errors; with
// `strict`, names missing from `state` and names the module does not have are
// errors too (InvalidArgument listing all three kinds of problem).
absl::Status LoadStateDict(torch::nn::Module& module,
                           const std::map<std::string, torch::Tensor>& state, bool strict);

}  // namespace tb

#endif  // TIMEBALANCE_BACKBONES_BACKBONE_H_
