#include "ssl/objective.h"

#include <ATen/CPUGeneratorImpl.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"
#include "ssl/losses.h"

namespace tb {

SslObjectiveRegistryType& SslObjectiveRegistry() {
  static auto* registry = new SslObjectiveRegistryType("ssl objective", "kind");
  return *registry;
}

absl::Status ValidateSslObjective(const SslObjectiveConfig& config, const std::string& path) {
  return SslObjectiveRegistry().Validate(config, {path});
}

absl::StatusOr<std::unique_ptr<SslObjective>> CreateSslObjective(const SslObjectiveConfig& config,
                                                                 const SslContext& context) {
  RETURN_IF_ERROR(ValidateSslObjective(config, "objective"));
  return SslObjectiveRegistry().Create(config, context);
}

ProjectionHead MakeProjection(const ProjectionOptions& options, int64_t in,
                              const ProjectionDefaults& defaults) {
  ProjectionHeadOptions o(in, options.out());
  o.hidden_features = options.hidden() > 0 ? options.hidden() : in;
  o.num_layers = options.has_num_layers() ? options.num_layers() : defaults.num_layers;
  o.final_batch_norm = options.has_final_batch_norm() ? options.final_batch_norm()
                                                      : defaults.final_batch_norm;
  o.normalize = defaults.normalize;
  return ProjectionHead(o);
}

EmaEncoderImpl::EmaEncoderImpl(std::shared_ptr<VideoBackbone> backbone,
                               ProjectionHead projection)
    : backbone_(std::move(backbone)), projection_(std::move(projection)) {
  register_module("backbone", backbone_);
  register_module("projection", projection_);
  initialized_ = register_buffer("initialized", torch::zeros({}, torch::kInt64));
  for (auto& p : parameters()) p.set_requires_grad(false);
}

void EmaEncoderImpl::Update(VideoBackbone& online_backbone, ProjectionHead online_projection,
                            double momentum) {
  torch::NoGradGuard no_grad;
  const double m = initialized() ? momentum : 0.0;
  ssl::EmaUpdate(*backbone_, online_backbone, m);
  ssl::EmaUpdate(*projection_, *online_projection, m);
  initialized_.fill_(1);
}

torch::Tensor EmaEncoderImpl::Embed(const torch::Tensor& clips) {
  torch::NoGradGuard no_grad;
  return projection_->forward(backbone_->Features(clips)).detach();
}

torch::Tensor ShuffledBatchNormEmbed(const std::function<torch::Tensor(const torch::Tensor&)>& embed,
                                     const torch::Tensor& clips, int64_t clips_per_video,
                                     int64_t step, Collectives& collectives) {
  torch::NoGradGuard no_grad;
  const int64_t k = clips_per_video;
  const int64_t b = clips.size(0) / k;
  const int rank = collectives.rank();
  const int64_t global = b * collectives.world_size();
  std::vector<int64_t> shape = clips.sizes().vec();
  shape[0] = b;
  shape.insert(shape.begin(), k);
  // [K, B, ...]: every rank's videos in global order.
  const torch::Tensor all = AllGatherAlong(clips.reshape(shape), 1, collectives);
  // The same permutation on every rank.
  at::Generator generator = at::detail::createCPUGenerator(0x5f3759dfULL + step);
  const torch::Tensor perm = at::randperm(global, generator, torch::kLong);
  const torch::Tensor mine = perm.slice(0, rank * b, (rank + 1) * b).to(clips.device());
  const torch::Tensor keys = embed(all.index_select(1, mine).reshape(clips.sizes()));
  // Position j of the shuffled order holds video perm[j]; argsort(perm)[v]
  // is where video v went.
  const torch::Tensor shuffled_keys = AllGatherAlong(keys.reshape({k, b, -1}), 1, collectives);
  const torch::Tensor restored =
      shuffled_keys.index_select(1, torch::argsort(perm).to(clips.device()));
  return restored.slice(1, rank * b, (rank + 1) * b).reshape({k * b, -1});
}

absl::StatusOr<EmaEncoder> MakeEmaEncoder(const SslContext& context,
                                          const ProjectionOptions& projection,
                                          const ProjectionDefaults& defaults) {
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> copy, CreateBackbone(context.backbone));
  EmaEncoder encoder(copy, MakeProjection(projection, context.feature_dim, defaults));
  encoder->to(context.device);
  return encoder;
}

absl::StatusOr<torch::Tensor> GetView(const ViewTensors& views, const std::string& name,
                                      int64_t clips) {
  auto it = views.find(name);
  if (it == views.end()) {
    std::vector<std::string> names;
    for (const auto& [n, t] : views) names.push_back(n);
    return absl::InvalidArgumentError(absl::StrCat("batch has no view \"", name,
                                                   "\" (views: ", absl::StrJoin(names, ", "),
                                                   "); the sampler does not match the objective"));
  }
  const torch::Tensor& t = it->second;
  if (t.dim() != 6 || t.size(1) != clips) {
    return absl::InvalidArgumentError(absl::StrCat("view \"", name, "\" has shape ",
                                                   c10::str(t.sizes()), ", expected [B, ", clips,
                                                   ", 3, T, S, S]"));
  }
  return t;
}

torch::Tensor ClipMajor(const torch::Tensor& view) {
  std::vector<int64_t> shape = {view.size(0) * view.size(1)};
  for (int64_t d = 2; d < view.dim(); ++d) shape.push_back(view.size(d));
  return view.transpose(0, 1).reshape(shape);
}

}  // namespace tb
