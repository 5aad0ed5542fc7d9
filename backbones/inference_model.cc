#include "backbones/inference_model.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <ATen/record_function.h>
#include <c10/core/InferenceMode.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

#include <algorithm>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <typeinfo>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "backbones/sync_batch_norm.h"
#include "core/autocast.h"
#include "core/status_macros.h"
#include "core/torch_status.h"

namespace tb {
namespace {

using torch::nn::Module;

// ---------------------------------------------------------------------------
// Observing a forward pass: every top-level operator call (not the calls
// operators make internally) with its tensor inputs and outputs, on this
// thread. The recorded tensors are held, so no TensorImpl address is reused
// while the trace is alive and addresses identify tensors.

struct OpCall {
  std::string name;
  std::vector<torch::Tensor> inputs;   // positional; undefined for non-tensors
  std::vector<torch::Tensor> outputs;  // the tensors among the outputs
};

struct Trace {
  std::vector<OpCall> ops;
  int depth = 0;
};

thread_local Trace* t_trace = nullptr;

void AppendTensors(const c10::IValue& value, std::vector<torch::Tensor>* out) {
  if (value.isTensor()) {
    out->push_back(value.toTensor());
  } else if (value.isTensorList()) {
    for (const torch::Tensor& t : value.toTensorVector()) out->push_back(t);
  } else if (value.isList()) {
    for (const c10::IValue& v : value.toListRef()) {
      if (v.isTensor()) out->push_back(v.toTensor());
    }
  } else {
    out->push_back(torch::Tensor());  // keeps tensor arguments at their position
  }
}

std::unique_ptr<at::ObserverContext> OnOpStart(const at::RecordFunction& fn) {
  if (t_trace == nullptr) return nullptr;
  if (t_trace->depth++ == 0) {
    OpCall call;
    call.name = fn.name();
    for (const c10::IValue& v : fn.inputs()) AppendTensors(v, &call.inputs);
    t_trace->ops.push_back(std::move(call));
  }
  return nullptr;
}

void OnOpEnd(const at::RecordFunction& fn, at::ObserverContext*) {
  if (t_trace == nullptr) return;
  if (--t_trace->depth == 0 && !t_trace->ops.empty()) {
    for (const c10::IValue& v : fn.outputs()) {
      if (v.isTensor()) t_trace->ops.back().outputs.push_back(v.toTensor());
    }
  }
}

// Runs `forward` with the observer installed; returns its outputs.
std::vector<torch::Tensor> TraceForward(const std::function<std::vector<torch::Tensor>()>& forward,
                                        Trace* trace) {
  struct Install {
    explicit Install(Trace* trace) {
      t_trace = trace;
      handle = at::addThreadLocalCallback(at::RecordFunctionCallback(&OnOpStart, &OnOpEnd)
                                              .needsInputs(true)
                                              .needsOutputs(true)
                                              .scopes({at::RecordScope::FUNCTION}));
    }
    ~Install() {
      at::removeCallback(handle);
      t_trace = nullptr;
    }
    at::CallbackHandle handle;
  } install(trace);
  return forward();
}

// ---------------------------------------------------------------------------
// Module kinds. Only the exact LibTorch types are folded: a subclass may
// have its own forward().

struct BatchNormParts {
  torch::Tensor weight, bias, running_mean, running_var;
  double eps = 0;
  bool tracks_running_stats = false;
};

template <typename Impl>
std::optional<BatchNormParts> PartsIf(const Module& m) {
  if (typeid(m) != typeid(Impl)) return std::nullopt;
  const auto& bn = dynamic_cast<const Impl&>(m);
  return BatchNormParts{bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.options.eps(),
                        bn.options.track_running_stats()};
}

std::optional<BatchNormParts> BatchNormOf(const Module& m) {
  // The backbones' BatchNorm (per-process statistics in eval mode).
  if (auto p = PartsIf<SyncBatchNormImpl>(m)) return p;
  if (auto p = PartsIf<torch::nn::BatchNorm1dImpl>(m)) return p;
  if (auto p = PartsIf<torch::nn::BatchNorm2dImpl>(m)) return p;
  return PartsIf<torch::nn::BatchNorm3dImpl>(m);
}

// Any BatchNorm, subclasses included (for counting what is left).
bool IsAnyBatchNorm(const Module& m) {
  return dynamic_cast<const SyncBatchNormImpl*>(&m) != nullptr ||
         dynamic_cast<const torch::nn::BatchNorm1dImpl*>(&m) != nullptr ||
         dynamic_cast<const torch::nn::BatchNorm2dImpl*>(&m) != nullptr ||
         dynamic_cast<const torch::nn::BatchNorm3dImpl*>(&m) != nullptr;
}

bool IsPlainConv(const Module& m) {
  return typeid(m) == typeid(torch::nn::Conv1dImpl) ||
         typeid(m) == typeid(torch::nn::Conv2dImpl) || typeid(m) == typeid(torch::nn::Conv3dImpl);
}

struct ConvParts {
  torch::Tensor weight, bias;  // bias undefined for a bias-free conv
};

template <typename Impl>
std::optional<ConvParts> ConvPartsIf(const Module& m) {
  if (typeid(m) != typeid(Impl)) return std::nullopt;
  const auto& conv = dynamic_cast<const Impl&>(m);
  return ConvParts{conv.weight, conv.bias};
}

// The weight and bias of a plain Conv1d/2d/3d (undefined weight otherwise).
ConvParts ConvOf(const Module& m) {
  if (auto p = ConvPartsIf<torch::nn::Conv1dImpl>(m)) return *p;
  if (auto p = ConvPartsIf<torch::nn::Conv2dImpl>(m)) return *p;
  if (auto p = ConvPartsIf<torch::nn::Conv3dImpl>(m)) return *p;
  return {};
}

// Replaces the convolution `m` (exactly `Impl`) by an equal one with a bias
// and the given weight and bias, in place: the object stays the same, so
// every holder of it (a parent's member, a Sequential) sees the new values.
// A fresh module is needed because LibTorch registers a bias-free conv's
// "bias" as an undefined parameter that cannot be re-registered.
template <typename Impl, typename Options>
bool AssignBiasedConv(Module& m, const torch::Tensor& weight, const torch::Tensor& bias) {
  if (typeid(m) != typeid(Impl)) return false;
  Impl& conv = dynamic_cast<Impl&>(m);
  const auto& o = conv.options;
  Options options(o.in_channels(), o.out_channels(), o.kernel_size());
  options.stride(o.stride())
      .padding(o.padding())
      .dilation(o.dilation())
      .groups(o.groups())
      .padding_mode(o.padding_mode())
      .bias(true);
  Impl biased(options);
  biased.weight.set_data(weight);
  biased.bias.set_data(bias);
  conv = biased;
  return true;
}

void AssignBiasedConv(Module& m, const torch::Tensor& weight, const torch::Tensor& bias) {
  if (AssignBiasedConv<torch::nn::Conv1dImpl, torch::nn::Conv1dOptions>(m, weight, bias)) return;
  if (AssignBiasedConv<torch::nn::Conv2dImpl, torch::nn::Conv2dOptions>(m, weight, bias)) return;
  AssignBiasedConv<torch::nn::Conv3dImpl, torch::nn::Conv3dOptions>(m, weight, bias);
}

bool IsConvOp(const std::string& name) {
  return name == "aten::conv1d" || name == "aten::conv2d" || name == "aten::conv3d" ||
         name == "aten::convolution" || name == "aten::_convolution";
}

bool IsBatchNormOp(const std::string& name) {
  return name == "aten::batch_norm" || name == "aten::native_batch_norm" ||
         name == "aten::_native_batch_norm_legit";
}

const c10::TensorImpl* Impl(const torch::Tensor& t) {
  return t.defined() ? t.unsafeGetTensorImpl() : nullptr;
}

// Where a module sits in the tree.
struct Placement {
  std::string name;
  std::vector<std::pair<torch::nn::SequentialImpl*, std::string>> in_sequential;
  int parents = 0;
};

std::map<const Module*, Placement> PlaceModules(Module& root) {
  std::map<const Module*, Placement> places;
  for (const auto& item : root.named_modules()) {
    places[item.value().get()].name = item.key();
  }
  for (const auto& item : root.named_modules()) {
    auto* sequential = item.value()->as<torch::nn::SequentialImpl>();
    for (const auto& child : item.value()->named_children()) {
      Placement& place = places[child.value().get()];
      ++place.parents;
      if (sequential != nullptr) place.in_sequential.emplace_back(sequential, child.key());
    }
  }
  return places;
}

// A Sequential can be rebuilt element by element when its children are
// exactly its elements and it has no parameters or buffers of its own.
bool Rebuildable(torch::nn::SequentialImpl& sequential) {
  return sequential.named_children().size() == sequential.size() &&
         sequential.named_parameters(/*recurse=*/false).is_empty() &&
         sequential.named_buffers(/*recurse=*/false).is_empty();
}

// Replaces the elements of `sequential` named in `remove` with Identity, in
// place (the parent keeps holding the same object; names are kept).
void ReplaceWithIdentity(torch::nn::SequentialImpl& sequential,
                         const std::set<std::string>& remove) {
  torch::nn::SequentialImpl rebuilt;
  const auto children = sequential.named_children();
  size_t i = 0;
  for (const torch::nn::AnyModule& element : sequential) {
    std::string name = children[i++].key();
    if (remove.count(name) > 0) {
      rebuilt.push_back(std::move(name), torch::nn::AnyModule(torch::nn::Identity()));
    } else {
      rebuilt.push_back(std::move(name), element);
    }
  }
  sequential = rebuilt;
}

int64_t CountBatchNorms(Module& root) {
  int64_t n = 0;
  for (const auto& m : root.modules()) n += IsAnyBatchNorm(*m) ? 1 : 0;
  return n;
}

// Largest |a - b| relative to the largest |a| over the output lists.
double RelativeDifference(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const torch::Tensor x = a[i].to(torch::kDouble), y = b[i].to(torch::kDouble);
    if (x.sizes() != y.sizes()) return std::numeric_limits<double>::infinity();
    if (x.numel() == 0) continue;
    diff = std::max(diff, (x - y).abs().max().item<double>());
    scale = std::max(scale, x.abs().max().item<double>());
  }
  return diff / std::max(scale, 1e-12);
}

// Turns autocast off (for the fp32 and bf16-weight paths, so that a caller's
// autocast scope does not recast the weights) and restores it.
class AutocastOff {
 public:
  explicit AutocastOff(const torch::Device& device) : cuda_(device.is_cuda()) {
    previous_ = cuda_ ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
    Set(false);
  }
  ~AutocastOff() { Set(previous_); }
  AutocastOff(const AutocastOff&) = delete;
  AutocastOff& operator=(const AutocastOff&) = delete;

 private:
  void Set(bool on) {
    if (cuda_) {
      at::autocast::set_enabled(on);
    } else {
      at::autocast::set_cpu_enabled(on);
    }
  }
  bool cuda_;
  bool previous_ = false;
};

// Restores torch's default CPU generator when it goes out of scope.
class CpuRngStateGuard {
 public:
  CpuRngStateGuard() {
    auto generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    state_ = generator.get_state();
  }
  ~CpuRngStateGuard() {
    auto generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(state_);
  }
  CpuRngStateGuard(const CpuRngStateGuard&) = delete;
  CpuRngStateGuard& operator=(const CpuRngStateGuard&) = delete;

 private:
  torch::Tensor state_;
};

const char* PrecisionName(InferencePrecision precision) {
  switch (precision) {
    case InferencePrecision::kFp32:
      return "kFp32";
    case InferencePrecision::kBf16Weights:
      return "kBf16Weights";
    case InferencePrecision::kBf16Autocast:
      return "kBf16Autocast";
  }
  return "?";
}

std::string ShapeString(c10::IntArrayRef sizes) {
  return absl::StrCat("[", absl::StrJoin(sizes, ", "), "]");
}

}  // namespace

std::string BatchNormFoldReport::ToString() const {
  std::string out = absl::StrCat(folded.size(), " of ", batch_norms_before,
                                 " BatchNorms folded, ", batch_norms_after, " left\n");
  for (const Folded& f : folded) absl::StrAppend(&out, "  folded ", f.batch_norm, " into ", f.conv, "\n");
  for (const Kept& k : kept) absl::StrAppend(&out, "  kept ", k.batch_norm, ": ", k.reason, "\n");
  return out;
}

absl::StatusOr<BatchNormFoldReport> FoldBatchNorms(
    Module& model, const std::function<std::vector<torch::Tensor>()>& forward) {
  // Building each biased convolution initialises (and discards) its weights
  // from the CPU generator; the caller's stream must not move.
  CpuRngStateGuard rng;
  if (model.is_training()) {
    return absl::FailedPreconditionError(
        "FoldBatchNorms: the model is in training mode; call eval() first (folding uses the "
        "running statistics)");
  }
  for (const auto& p : model.named_parameters()) {
    if (p.value().scalar_type() != torch::kFloat) {
      return absl::FailedPreconditionError(
          absl::StrCat("FoldBatchNorms: parameter ", p.key(), " is ",
                       c10::toString(p.value().scalar_type()), ", folding needs fp32 weights"));
    }
  }
  const torch::Device device =
      model.parameters().empty() ? torch::Device(torch::kCPU) : model.parameters()[0].device();

  // 1. Observe the unfolded forward pass.
  Trace trace;
  std::vector<torch::Tensor> before;
  {
    c10::InferenceMode inference;
    AutocastOff autocast(device);
    absl::StatusOr<std::vector<torch::Tensor>> outputs =
        CallTorch("FoldBatchNorms: the probe forward pass failed", [&] {
          return TraceForward(forward, &trace);
        });
    if (!outputs.ok()) return absl::InvalidArgumentError(outputs.status().message());
    before = *std::move(outputs);
  }

  // 2. Who produced and who reads every tensor; which call ran which module.
  std::map<const c10::TensorImpl*, const Module*> conv_of_weight, batch_norm_of_tensor;
  std::vector<std::shared_ptr<Module>> modules = model.modules();
  for (const auto& m : modules) {
    if (IsPlainConv(*m)) conv_of_weight[Impl(ConvOf(*m).weight)] = m.get();
    if (auto parts = BatchNormOf(*m)) {
      for (const torch::Tensor& t :
           {parts->weight, parts->bias, parts->running_mean, parts->running_var}) {
        if (t.defined()) batch_norm_of_tensor[Impl(t)] = m.get();
      }
    }
  }
  // Output -> the last op that wrote it (an in-place op returns its input).
  std::map<const c10::TensorImpl*, size_t> producer;
  std::map<const c10::TensorImpl*, int> readers;
  std::map<const Module*, std::vector<size_t>> conv_calls, batch_norm_calls;
  for (size_t i = 0; i < trace.ops.size(); ++i) {
    const OpCall& op = trace.ops[i];
    for (const torch::Tensor& t : op.inputs) {
      if (t.defined()) ++readers[Impl(t)];
    }
    for (const torch::Tensor& t : op.outputs) producer[Impl(t)] = i;
    if (IsConvOp(op.name) && op.inputs.size() > 1) {
      auto it = conv_of_weight.find(Impl(op.inputs[1]));
      if (it != conv_of_weight.end()) conv_calls[it->second].push_back(i);
    } else if (IsBatchNormOp(op.name)) {
      for (size_t k = 1; k < std::min<size_t>(op.inputs.size(), 5); ++k) {
        auto it = batch_norm_of_tensor.find(Impl(op.inputs[k]));
        if (it != batch_norm_of_tensor.end()) {
          batch_norm_calls[it->second].push_back(i);
          break;
        }
      }
    }
  }
  for (const torch::Tensor& t : before) ++readers[Impl(t)];  // returned = read

  // 3. Decide per BatchNorm.
  const std::map<const Module*, Placement> places = PlaceModules(model);
  auto name_of = [&](const Module* m) { return places.at(m).name; };
  BatchNormFoldReport report;
  struct Fold {
    Module* conv;
    Module* batch_norm;
  };
  std::vector<Fold> folds;
  std::map<torch::nn::SequentialImpl*, std::set<std::string>> removals;
  for (const auto& m : modules) {
    if (!IsAnyBatchNorm(*m)) continue;
    ++report.batch_norms_before;
    const std::string bn_name = name_of(m.get());
    auto keep = [&](std::string reason) {
      report.kept.push_back({bn_name, std::move(reason)});
    };
    const std::optional<BatchNormParts> parts = BatchNormOf(*m);
    if (!parts) {
      keep("a subclass of a LibTorch BatchNorm (its forward() may differ)");
      continue;
    }
    if (!parts->tracks_running_stats || !parts->running_mean.defined() ||
        !parts->running_var.defined()) {
      keep("no running statistics: it normalises with batch statistics even in eval mode");
      continue;
    }
    const std::vector<size_t>& calls = batch_norm_calls[m.get()];
    if (calls.size() != 1) {
      keep(absl::StrCat("called ", calls.size(), " times in the probe forward pass, not once"));
      continue;
    }
    const OpCall& bn_op = trace.ops[calls[0]];
    const c10::TensorImpl* input = bn_op.inputs.empty() ? nullptr : Impl(bn_op.inputs[0]);
    auto made = producer.find(input);
    if (made == producer.end() || !IsConvOp(trace.ops[made->second].name)) {
      keep(absl::StrCat("its input is not a convolution's output (it comes from ",
                        made == producer.end() ? std::string("outside the traced ops")
                                               : trace.ops[made->second].name,
                        ")"));
      continue;
    }
    const OpCall& conv_op = trace.ops[made->second];
    auto conv_it = conv_of_weight.find(conv_op.inputs.size() > 1 ? Impl(conv_op.inputs[1]) : nullptr);
    if (conv_it == conv_of_weight.end()) {
      keep(absl::StrCat("its input comes from ", conv_op.name,
                        " whose weight is not a plain Conv1d/2d/3d module's"));
      continue;
    }
    Module* conv = const_cast<Module*>(conv_it->second);
    const std::string conv_name = name_of(conv);
    if (conv_calls[conv].size() != 1) {
      keep(absl::StrCat("its convolution ", conv_name, " runs ", conv_calls[conv].size(),
                        " times in one forward pass (shared weights)"));
      continue;
    }
    if (readers[input] != 1) {
      keep(absl::StrCat("the output of ", conv_name, " is also read elsewhere (", readers[input],
                        " readers)"));
      continue;
    }
    const Placement& place = places.at(m.get());
    if (place.parents != 1 || place.in_sequential.size() != 1) {
      keep(place.in_sequential.empty()
               ? "a named member of its parent, called in the parent's forward(), which cannot "
                 "skip it (not in a Sequential)"
               : "registered in more than one place");
      continue;
    }
    torch::nn::SequentialImpl* sequential = place.in_sequential[0].first;
    if (!Rebuildable(*sequential)) {
      keep("its Sequential has children or parameters besides its elements");
      continue;
    }
    folds.push_back({conv, m.get()});
    removals[sequential].insert(place.in_sequential[0].second);
    report.folded.push_back({bn_name, conv_name});
  }

  // 4. Fold (in double precision) and take the BatchNorms out.
  absl::Status folded = CallTorch("FoldBatchNorms: folding", [&] {
    torch::NoGradGuard no_grad;
    for (const Fold& f : folds) {
      const BatchNormParts bn = *BatchNormOf(*f.batch_norm);
      const ConvParts conv = ConvOf(*f.conv);
      const torch::Tensor& weight = conv.weight;
      const torch::Tensor w = weight.to(torch::kDouble);
      const int64_t out = w.size(0);
      const auto dd = torch::TensorOptions().dtype(torch::kDouble).device(w.device());
      const torch::Tensor gamma = bn.weight.defined() ? bn.weight.to(torch::kDouble)
                                                      : torch::ones({out}, dd);
      const torch::Tensor beta = bn.bias.defined() ? bn.bias.to(torch::kDouble)
                                                   : torch::zeros({out}, dd);
      const torch::Tensor scale =
          gamma / (bn.running_var.to(torch::kDouble) + bn.eps).sqrt();
      std::vector<int64_t> shape(w.dim(), 1);
      shape[0] = out;
      const torch::Tensor b = conv.bias.defined() ? conv.bias.to(torch::kDouble)
                                                  : torch::zeros({out}, dd);
      const torch::Tensor folded_w = (w * scale.view(shape)).to(weight.scalar_type());
      const torch::Tensor folded_b =
          (beta + (b - bn.running_mean.to(torch::kDouble)) * scale).to(weight.scalar_type());
      AssignBiasedConv(*f.conv, folded_w, folded_b);
    }
    for (auto& [sequential, names] : removals) ReplaceWithIdentity(*sequential, names);
  });
  RETURN_IF_ERROR(folded);
  report.batch_norms_after = CountBatchNorms(model);

  // 5. The folded model must compute what the original did.
  {
    c10::InferenceMode inference;
    AutocastOff autocast(device);
    ASSIGN_OR_RETURN(std::vector<torch::Tensor> after,
                     CallTorch("FoldBatchNorms: the folded forward pass failed", forward));
    const double relative = RelativeDifference(before, after);
    if (!(relative < 1e-4)) {
      return absl::InternalError(absl::StrCat(
          "FoldBatchNorms: the folded model's outputs differ from the original's by ", relative,
          " (relative); a Sequential that does not run its elements in order? ",
          report.ToString()));
    }
  }
  return report;
}

InferencePrecision InferencePrecisionFor(Precision precision) {
  return precision == Precision::kBf16 ? InferencePrecision::kBf16Autocast
                                       : InferencePrecision::kFp32;
}

absl::StatusOr<InferenceModel> InferenceModel::Create(const BackboneConfig& config,
                                                      const VideoBackbone& trained,
                                                      const InferenceOptions& options) {
  BackboneConfig copy_config = config;
  copy_config.set_channels_last(false);  // the options decide the layout
  CpuRngStateGuard rng;  // building the copy draws (discarded) initial weights
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> copy, CreateBackbone(copy_config));
  absl::Status loaded = LoadStateDict(*copy, ModuleStateDict(trained), /*strict=*/true);
  if (!loaded.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("InferenceModel::Create: the trained model does not fit backbone config {",
                     config.ShortDebugString(), "}: ", loaded.message()));
  }
  const std::vector<torch::Tensor> params = trained.parameters();
  if (!params.empty() && params[0].device() != torch::Device(torch::kCPU)) {
    RETURN_IF_ERROR(CallTorch("InferenceModel::Create: moving the copy",
                              [&] { copy->to(params[0].device()); }));
  }
  InferenceOptions adopted = options;
  adopted.probe_clip_shape[1] = config.input_channels();  // e.g. 2 for a flow model
  return Adopt(std::move(copy), adopted);
}

absl::StatusOr<InferenceModel> InferenceModel::Adopt(std::shared_ptr<VideoBackbone> model,
                                                     const InferenceOptions& options) {
  if (model == nullptr) return absl::InvalidArgumentError("InferenceModel::Adopt: null model");
  if (model.use_count() > 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "InferenceModel::Adopt: the model is shared (use_count ", model.use_count(),
        "); Adopt folds it in place, so pass a model nobody else uses, or use Create to copy"));
  }
  for (int64_t s : options.probe_clip_shape) {
    if (s <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("InferenceOptions.probe_clip_shape must be positive, got ",
                       ShapeString(options.probe_clip_shape)));
    }
  }
  const std::vector<torch::Tensor> params = model->parameters();
  const torch::Device device = params.empty() ? torch::Device(torch::kCPU) : params[0].device();
  model->eval();
  for (torch::Tensor& p : model->parameters()) p.set_requires_grad(false);

  BatchNormFoldReport report;
  if (options.fold_batch_norm) {
    // A fixed pattern, not random numbers: the caller's RNG stream is untouched.
    const int64_t n = options.probe_clip_shape[0] * options.probe_clip_shape[1] *
                      options.probe_clip_shape[2] * options.probe_clip_shape[3] *
                      options.probe_clip_shape[4];
    const torch::Tensor probe =
        torch::arange(n, torch::TensorOptions().dtype(torch::kFloat).device(device))
            .mul(0.7853)
            .sin()
            .view(options.probe_clip_shape);
    VideoBackbone& m = *model;
    absl::StatusOr<BatchNormFoldReport> folded = FoldBatchNorms(m, [&] {
      torch::Tensor features = m.Features(probe);
      return std::vector<torch::Tensor>{features, m.Logits(features)};
    });
    if (!folded.ok()) {
      if (folded.status().code() == absl::StatusCode::kInvalidArgument) {
        return absl::InvalidArgumentError(
            absl::StrCat(folded.status().message(), " (probe clip of InferenceOptions."
                         "probe_clip_shape ", ShapeString(options.probe_clip_shape),
                         "; it must be a valid input for the backbone)"));
      }
      return folded.status();
    }
    report = *std::move(folded);
  } else {
    report.batch_norms_before = report.batch_norms_after = CountBatchNorms(*model);
    for (const auto& item : model->named_modules()) {
      if (IsAnyBatchNorm(*item.value())) {
        report.kept.push_back({item.key(), "folding disabled (InferenceOptions.fold_batch_norm)"});
      }
    }
  }
  RETURN_IF_ERROR(CallTorch("InferenceModel: preparing weights", [&] {
    torch::NoGradGuard no_grad;
    // Folding gives convolutions new bias parameters: frozen like the rest.
    for (torch::Tensor& p : model->parameters()) p.set_requires_grad(false);
    if (options.precision == InferencePrecision::kBf16Weights) model->to(torch::kBFloat16);
    if (options.channels_last) ToChannelsLast(*model);
  }));
  InferenceModel prepared(std::move(model), options, std::move(report), device);
  // Some operators have no kernel for some dtypes (LibTorch 1.13 has no bf16
  // max_pool3d on CPU): better to say so now than at the first batch.
  absl::StatusOr<InferenceOutputs> trial =
      prepared.Run(torch::zeros(options.probe_clip_shape, torch::TensorOptions().device(device)));
  if (!trial.ok()) {
    const bool dtype = absl::StrContains(trial.status().message(), "not implemented for");
    return absl::Status(
        dtype ? absl::StatusCode::kUnimplemented : trial.status().code(),
        absl::StrCat("InferenceModel: the prepared model cannot run the probe clip ",
                     ShapeString(options.probe_clip_shape), " with precision ",
                     PrecisionName(options.precision),
                     options.channels_last ? ", channels-last" : "", ": ",
                     trial.status().message(),
                     dtype ? " (an operator of this backbone has no kernel for this dtype on "
                             "this device; try kBf16Autocast)"
                           : ""));
  }
  return prepared;
}

absl::StatusOr<InferenceOutputs> InferenceModel::Run(const torch::Tensor& clip) {
  return Forward(clip, kWantFeatures | kWantLogits | kWantProbabilities);
}

absl::StatusOr<InferenceOutputs> InferenceModel::Forward(const torch::Tensor& clip, int wanted) {
  if (!clip.defined() || clip.dim() != 5 || !clip.is_floating_point()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "InferenceModel: the clip must be a 5-D floating tensor [B, C, T, H, W], got ",
        clip.defined() ? absl::StrCat(c10::toString(clip.scalar_type()), " ",
                                      ShapeString(clip.sizes()))
                       : std::string("an undefined tensor")));
  }
  return CallTorch("InferenceModel forward", [&] {
    InferenceOutputs out;
    {
      c10::InferenceMode inference;
      std::optional<AutocastOff> autocast_off;
      std::optional<AutocastScope> autocast;
      if (options_.precision == InferencePrecision::kBf16Autocast) {
        autocast.emplace(device_, Precision::kBf16);
      } else {
        autocast_off.emplace(device_);
      }
      torch::Tensor x = clip.to(device_, options_.precision == InferencePrecision::kBf16Weights
                                             ? torch::kBFloat16
                                             : torch::kFloat);
      if (options_.channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast3d);
      const torch::Tensor features = model_->Features(x);
      if (wanted & kWantFeatures) out.features = features.to(torch::kFloat);
      if (wanted & (kWantLogits | kWantProbabilities)) {
        torch::Tensor logits = model_->Logits(features).to(torch::kFloat);
        if (wanted & kWantProbabilities) out.probabilities = torch::softmax(logits, 1);
        if (wanted & kWantLogits) out.logits = std::move(logits);
      }
    }
    // Ordinary tensors from here on (see the header); only what was asked
    // for is copied out.
    for (torch::Tensor* t : {&out.features, &out.logits, &out.probabilities}) {
      if (t->defined()) *t = t->clone();
    }
    return out;
  });
}

absl::StatusOr<torch::Tensor> InferenceModel::Logits(const torch::Tensor& clip) {
  ASSIGN_OR_RETURN(InferenceOutputs out, Forward(clip, kWantLogits));
  return out.logits;
}

absl::StatusOr<torch::Tensor> InferenceModel::Features(const torch::Tensor& clip) {
  ASSIGN_OR_RETURN(InferenceOutputs out, Forward(clip, kWantFeatures));
  return out.features;
}

absl::StatusOr<torch::Tensor> InferenceModel::Probabilities(const torch::Tensor& clip) {
  ASSIGN_OR_RETURN(InferenceOutputs out, Forward(clip, kWantProbabilities));
  return out.probabilities;
}

}  // namespace tb
