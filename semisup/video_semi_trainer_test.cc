// VideoSSL (semisup/video_semi_trainer.h, VideoSemiOptions): the frame
// choice by hand, the appearance targets and distillation term and the whole
// loss against semisup/testdata/video_semi_reference.py (values and
// gradients, float64), the image model's per-frame logits, the trainer's two
// phases against an independent computation, a few optimizer steps (the
// image model trains during the warm-up and never after), an imported image
// checkpoint, and the option checks.
#include "semisup/video_semi_trainer.h"

#include <cmath>
#include <set>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/checkpoint.h"
#include "core/testing/reference_tensors.h"
#include "core/testing/test_util.h"
#include "google/protobuf/text_format.h"
#include "semisup/semi_supervised.h"
#include "semisup/semisup.pb.h"
#include "train/api/trainer.h"

namespace tb {
namespace {

constexpr int kClasses = 4;
constexpr int kFrames = 4;
constexpr char kImage[] = "image_backbone { tsm_r18 { width_multiplier: 0.0625 shift_div: 64 } }";

void ExpectClose(const torch::Tensor& actual, const torch::Tensor& expected,
                 const std::string& what, double tolerance = 1e-9) {
  ASSERT_TRUE(actual.defined()) << what;
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  EXPECT_LT((actual.to(torch::kDouble) - expected).abs().max().item<double>(), tolerance) << what;
}

TEST(VideoSemiFrames, EvenlySpacedCentres) {
  using V = std::vector<int64_t>;
  EXPECT_EQ(ImageFrameIndices(8, 0), (V{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(ImageFrameIndices(8, 1), (V{4}));
  EXPECT_EQ(ImageFrameIndices(8, 2), (V{2, 6}));
  EXPECT_EQ(ImageFrameIndices(16, 4), (V{2, 6, 10, 14}));
  EXPECT_EQ(ImageFrameIndices(5, 2), (V{1, 3}));
  EXPECT_EQ(ImageFrameIndices(4, 4), (V{0, 1, 2, 3}));
  EXPECT_EQ(ImageFrameIndices(4, 9), (V{0, 1, 2, 3}));
}

// Targets, the appearance term and the whole loss (ALL and SELECTED
// normalisation), values and gradients, against the Python reference
// (temperature 2, threshold 0.6, weights 0.7 and 1.5).
TEST(VideoSemiLosses, MatchTheReference) {
  const auto refs = ::tb::testing::RunReferenceTensors("semisup/testdata/video_semi_reference.py",
                                                       "video_semi_reference.txt");
  ASSERT_TRUE(refs.ok()) << refs.status();
  const auto ref = [&](const std::string& name) { return refs->at(name); };
  const auto leaf = [&](const std::string& name) { return ref(name).clone().requires_grad_(true); };
  const torch::Tensor labels = ref("labels").to(torch::kLong);

  const torch::Tensor target = AppearanceTargets(ref("frame_logits"), 2.0);
  ExpectClose(target, ref("target"), "appearance targets");
  ExpectClose(target.sum(1), torch::ones({target.size(0)}, torch::kDouble), "targets sum to 1");
  {
    const torch::Tensor head = leaf("head");
    const torch::Tensor loss = AppearanceDistillationLoss(head, target, 2.0);
    EXPECT_EQ(loss.scalar_type(), torch::kDouble);
    ExpectClose(loss, ref("appearance"), "appearance term");
    loss.backward();
    ExpectClose(head.grad(), ref("appearance_grad"), "appearance gradient");
  }
  for (const auto& [name, normalization] :
       std::vector<std::pair<std::string, PseudoLabelOptions::Normalization>>{
           {"all", PseudoLabelOptions::ALL}, {"selected", PseudoLabelOptions::SELECTED}}) {
    const torch::Tensor logits = leaf("logits"), head = leaf("head");
    VideoSemiLossOptions o;
    o.threshold = 0.6f;
    o.normalization = normalization;
    o.pseudo_label_weight = 0.7;
    o.appearance_weight = 1.5;
    o.temperature = 2.0;
    const VideoSemiLoss loss = ComputeVideoSemiLoss(logits, labels, head, target, o);
    ExpectClose(loss.ce, ref(name + "_ce"), name + " CE");
    ExpectClose(loss.pseudo_label, ref(name + "_pl"), name + " pseudo-label term");
    ExpectClose(loss.pseudo_labels.mask, ref(name + "_mask"), name + " mask");
    ExpectClose(loss.total, ref(name + "_total"), name + " total");
    loss.total.backward();
    ExpectClose(logits.grad(), ref(name + "_grad_logits"), name + " gradient (class logits)");
    ExpectClose(head.grad(), ref(name + "_grad_head"), name + " gradient (appearance head)");
  }
}

TEST(VideoSemiLosses, AppearanceTermVanishesAtTheTarget) {
  // A head whose softmax(z / T) is the target: KL 0 and no gradient. Zero
  // target entries (a one-hot row) contribute nothing.
  const torch::Tensor q = torch::tensor({{0.2, 0.3, 0.5}, {1.0, 0.0, 0.0}}, torch::kDouble);
  const double t = 3.0;
  const torch::Tensor z = (t * torch::log(q.clamp_min(1e-300))).requires_grad_(true);
  const torch::Tensor loss = AppearanceDistillationLoss(z, q, t);
  EXPECT_NEAR(loss.item<double>(), 0.0, 1e-12);
  loss.backward();
  EXPECT_LT(z.grad().abs().max().item<double>(), 1e-12);
  // Without an appearance input the total has no appearance term.
  const torch::Tensor logits = torch::randn({3, 2}, torch::kDouble);
  const VideoSemiLoss l =
      ComputeVideoSemiLoss(logits, torch::tensor({1}, torch::kLong), {}, {}, {});
  EXPECT_FALSE(l.appearance.defined());
  EXPECT_NEAR(l.total.item<double>(), (l.ce + l.pseudo_label).item<double>(), 1e-12);
}

std::shared_ptr<VideoBackbone> TinyImageModel(int classes) {
  BackboneConfig c;
  c.mutable_tsm_r18()->set_width_multiplier(0.0625f);
  c.mutable_tsm_r18()->set_shift_div(64);
  c.set_num_classes(classes);
  auto m = CreateBackbone(c);
  EXPECT_TRUE(m.ok()) << m.status();
  return *m;
}

TEST(VideoSemiImageModel, EveryFrameOnItsOwn) {
  torch::manual_seed(3);
  auto image = TinyImageModel(5);
  image->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor clips = torch::randn({2, 3, 6, 32, 32});
  const std::vector<int64_t> frames = ImageFrameIndices(6, 3);  // 1, 3, 5
  const torch::Tensor logits = ImageFrameLogits(*image, clips, frames);
  ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{2, 3, 5}));
  for (int64_t b = 0; b < 2; ++b) {
    for (size_t f = 0; f < frames.size(); ++f) {
      const torch::Tensor one =
          image->forward(clips.slice(0, b, b + 1).slice(2, frames[f], frames[f] + 1));
      EXPECT_LT((logits[b][f] - one[0]).abs().max().item<double>(), 1e-5) << b << " " << f;
    }
  }
}

TrainerContext Context() {
  TrainerContext context;
  context.backbone.mutable_r3d18()->set_width_multiplier(0.0625f);
  context.backbone.set_num_classes(kClasses);
  context.dataset.set_labeled_fraction(0.5f);
  context.dataset.mutable_clip()->set_num_frames(kFrames);
  context.total_steps = 10;
  return context;
}

absl::Status Validate(const std::string& text) {
  TrainerConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config)) << text;
  const TrainerContext context = Context();
  return ValidateTrainer(config, {"trainer", context.backbone, context.dataset});
}

std::unique_ptr<Trainer> Make(const std::string& text) {
  TrainerConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config)) << text;
  const absl::Status valid = Validate(text);
  EXPECT_TRUE(valid.ok()) << valid;
  torch::manual_seed(1);
  auto trainer = CreateTrainer(config, Context());
  EXPECT_TRUE(trainer.ok()) << trainer.status();
  return trainer.ok() ? std::move(*trainer) : nullptr;
}

ClipBatch Batch(int n, int seed) {
  torch::manual_seed(seed);
  ClipBatch b;
  b.clips = torch::randn({n, 3, kFrames, 32, 32});
  b.labels = torch::randint(0, kClasses, {n}, torch::kInt64);
  return b;
}

VideoBackbone& ImageModelOf(Trainer& t) {
  for (auto& [name, module] : t.CheckpointModules()) {
    if (name == "image_model") return *dynamic_cast<VideoBackbone*>(module);
  }
  ADD_FAILURE() << "no image_model module";
  return t.EvaluationModel();
}

torch::nn::Linear HeadOf(Trainer& t) {
  for (auto& [name, module] : t.CheckpointModules()) {
    if (name == "appearance_head") {
      return torch::nn::Linear(std::dynamic_pointer_cast<torch::nn::LinearImpl>(
          module->shared_from_this()));
    }
  }
  ADD_FAILURE() << "no appearance_head module";
  return nullptr;
}

// Warm-up 2 steps: CE of the video model + CE of the image model on the
// labeled clips' frames 1 and 3; then the full loss with the image model's
// targets (threshold 0 so every unlabeled clip is pseudo-labeled).
TEST(VideoSemiTrainer, PhasesMatchAnIndependentComputation) {
  auto t = Make(std::string("video_semi { schedule { warmup_steps: 2 weight: 0.5 } "
                            "pseudo_label { threshold: 0 } appearance_weight: 2 temperature: 1.5 "
                            "image_frames: 2 ") +
                kImage + " }");
  ASSERT_NE(t, nullptr);
  std::set<std::string> names;
  for (auto& [name, module] : t->CheckpointModules()) names.insert(name);
  EXPECT_EQ(names, (std::set<std::string>{"model", "appearance_head", "image_model"}));
  VideoBackbone& video = t->EvaluationModel();
  VideoBackbone& image = ImageModelOf(*t);
  torch::nn::Linear head = HeadOf(*t);
  ASSERT_EQ(image.num_classes(), kClasses);  // the dataset's classes without a checkpoint
  ASSERT_EQ(head->weight.size(0), kClasses);
  // Video, head and (during the warm-up) image parameters are trained.
  EXPECT_EQ(t->TrainableParameters().size(),
            video.parameters().size() + 2 + image.parameters().size());

  t->SetTraining(false);  // eval-mode BatchNorm: the split into passes does not matter
  const ClipBatch lb = Batch(2, 2), ub = Batch(3, 3);
  const torch::Tensor x = torch::cat({lb.clips, ub.clips});
  torch::Tensor ce, ce_image, logits, features, q;
  {
    torch::NoGradGuard no_grad;
    features = video.Features(x);
    logits = video.Logits(features);
    ce = torch::nn::functional::cross_entropy(logits.slice(0, 0, 2), lb.labels);
    // Frames 1 and 3 of 4, one at a time.
    std::vector<torch::Tensor> frame_logits, per_frame;
    for (int64_t f : {1, 3}) {
      frame_logits.push_back(image.forward(lb.clips.slice(2, f, f + 1)));
      per_frame.push_back(torch::softmax(image.forward(x.slice(2, f, f + 1)) / 1.5, 1));
    }
    ce_image = (torch::nn::functional::cross_entropy(frame_logits[0], lb.labels) +
                torch::nn::functional::cross_entropy(frame_logits[1], lb.labels)) /
               2;
    q = (per_frame[0] + per_frame[1]) / 2;
  }
  auto warm = t->Step({&lb, &ub, 1});
  ASSERT_TRUE(warm.ok()) << warm.status();
  EXPECT_NEAR(warm->metrics.at("loss_ce"), ce.item<double>(), 1e-5);
  EXPECT_NEAR(warm->metrics.at("loss_image_ce"), ce_image.item<double>(), 1e-5);
  EXPECT_NEAR(warm->loss.item<double>(), (ce + ce_image).item<double>(), 1e-5);
  EXPECT_EQ(warm->metrics.count("loss_appearance"), 0u);
  EXPECT_TRUE(image.parameters()[0].requires_grad());

  auto full = t->Step({&lb, &ub, 2});
  ASSERT_TRUE(full.ok()) << full.status();
  for (const torch::Tensor& p : image.parameters()) {
    EXPECT_FALSE(p.requires_grad());
    EXPECT_FALSE(p.grad().defined());
  }
  EXPECT_FALSE(image.is_training());
  torch::Tensor expected_app, expected_pl;
  {
    torch::NoGradGuard no_grad;
    const torch::Tensor z = head->forward(features) / 1.5;
    expected_app = 1.5 * 1.5 * (q * (q.log() - torch::log_softmax(z, 1))).sum(1).mean();
    const torch::Tensor lu = logits.slice(0, 2);
    expected_pl = torch::nn::functional::cross_entropy(lu, lu.argmax(1));
  }
  EXPECT_NEAR(full->metrics.at("loss_appearance"), expected_app.item<double>(), 1e-5);
  EXPECT_NEAR(full->metrics.at("loss_pl"), expected_pl.item<double>(), 1e-5);
  EXPECT_EQ(full->metrics.at("weight_pl"), 0.5);
  EXPECT_EQ(full->metrics.at("weight_appearance"), 2.0);
  EXPECT_EQ(full->metrics.at("mask_rate"), 1.0);
  EXPECT_NEAR(full->loss.item<double>(),
              (ce + 0.5 * expected_pl + 2.0 * expected_app).item<double>(), 1e-4);
}

TEST(VideoSemiTrainer, AppearanceOnUnlabeledOnly) {
  auto t = Make(std::string("video_semi { schedule { warmup_steps: 1 } "
                            "appearance_on_labeled: false ") +
                kImage + " }");
  ASSERT_NE(t, nullptr);
  t->SetTraining(false);
  const ClipBatch lb = Batch(2, 4), ub = Batch(3, 5);
  torch::Tensor expected;
  {
    torch::NoGradGuard no_grad;
    VideoBackbone& image = ImageModelOf(*t);
    const torch::Tensor p = torch::softmax(ImageFrameLogits(image, ub.clips, {0, 1, 2, 3}), 2);
    const torch::Tensor q = p.mean(1);
    const torch::Tensor z = HeadOf(*t)->forward(t->EvaluationModel().Features(ub.clips));
    expected = (q * (q.log() - torch::log_softmax(z, 1))).sum(1).mean();
  }
  auto r = t->Step({&lb, &ub, 1});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NEAR(r->metrics.at("loss_appearance"), expected.item<double>(), 1e-5);
}

// A few Adam steps with weight decay (LibTorch's zero_grad keeps zeroed
// gradients defined): the image model moves during the warm-up and never
// after it, while the video model and the appearance head keep training.
TEST(VideoSemiTrainer, ImageModelTrainsOnlyDuringTheWarmUp) {
  auto t = Make(std::string("video_semi { schedule { warmup_steps: 2 } ") + kImage + " }");
  ASSERT_NE(t, nullptr);
  torch::optim::Adam adam(t->TrainableParameters(),
                          torch::optim::AdamOptions(1e-2).weight_decay(1e-2));
  VideoBackbone& image = ImageModelOf(*t);
  torch::nn::Linear head = HeadOf(*t);
  const auto snapshot = [](torch::nn::Module& m) {
    std::vector<torch::Tensor> out;
    for (const torch::Tensor& p : m.parameters()) out.push_back(p.detach().clone());
    return out;
  };
  const auto moved = [](torch::nn::Module& m, const std::vector<torch::Tensor>& before) {
    double d = 0;
    const auto params = m.parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      d = std::max(d, (params[i] - before[i]).abs().max().item<double>());
    }
    return d;
  };
  const auto image0 = snapshot(image), head0 = snapshot(*head);
  auto video = snapshot(t->EvaluationModel());
  std::vector<torch::Tensor> image1;
  t->SetTraining(true);
  for (int64_t step = 0; step < 6; ++step) {
    const ClipBatch lb = Batch(2, 10 + step), ub = Batch(2, 20 + step);
    auto r = t->Step({&lb, &ub, step});
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(std::isfinite(r->loss.item<double>()));
    adam.zero_grad();
    r->loss.backward();
    adam.step();
    if (step == 1) {
      EXPECT_GT(moved(image, image0), 0.0) << "the image model did not train in the warm-up";
      EXPECT_EQ(moved(*head, head0), 0.0) << "the head trained before the warm-up ended";
      image1 = snapshot(image);
    }
  }
  // Steps 2-5: the image model stays exactly where the warm-up left it.
  EXPECT_EQ(moved(image, image1), 0.0) << "the frozen image model moved";
  EXPECT_GT(moved(t->EvaluationModel(), video), 0.0);
  EXPECT_GT(moved(*head, head0), 0.0);
}

TEST(VideoSemiTrainer, ImportedImageModelIsFrozenFromTheStart) {
  torch::manual_seed(7);
  auto image = TinyImageModel(6);  // a different label space, like ImageNet's 1000
  const std::string path = ::tb::testing::TmpPath("image_ckpt.pt");
  CheckpointContents contents;
  contents.modules = {{"model", image.get()}};
  ASSERT_TRUE(SaveCheckpoint(path, contents).ok());
  auto t = Make(
      "video_semi { image_model: '" + path +
      "' image_backbone { tsm_r18 { width_multiplier: 0.0625 shift_div: 64 } num_classes: 6 } }");
  ASSERT_NE(t, nullptr);
  VideoBackbone& loaded = ImageModelOf(*t);
  EXPECT_EQ(loaded.num_classes(), 6);
  EXPECT_EQ(HeadOf(*t)->weight.size(0), 6);
  EXPECT_EQ(t->TrainableParameters().size(), t->EvaluationModel().parameters().size() + 2);
  for (const torch::Tensor& p : loaded.parameters()) EXPECT_FALSE(p.requires_grad());
  image->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor clip = torch::randn({1, 3, 1, 32, 32});
  EXPECT_LT((loaded.forward(clip) - image->forward(clip)).abs().max().item<double>(), 1e-6);
  // No warm-up is needed: the appearance term is on from step 0.
  const ClipBatch lb = Batch(2, 1), ub = Batch(2, 2);
  auto r = t->Step({&lb, &ub, 0});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->metrics.count("loss_appearance"), 1u);
  EXPECT_EQ(r->metrics.count("loss_image_ce"), 0u);

  TrainerConfig config;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(
      "video_semi { image_model: '/no/such/ckpt.pt' }", &config));
  auto missing = CreateTrainer(config, Context());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("trainer.video_semi.image_model"), std::string::npos)
      << missing.status();
}

TEST(VideoSemiTrainer, BadOptionsNameTheField) {
  const auto expect_error = [&](const std::string& text, const std::string& message) {
    const absl::Status s = Validate(text);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_NE(s.message().find(message), std::string::npos) << s;
  };
  expect_error("video_semi { schedule { warmup_steps: 1 } temperature: 0 }",
               "config field trainer.video_semi.temperature = 0: must be > 0");
  expect_error("video_semi { schedule { warmup_steps: 1 } appearance_weight: -1 }",
               "config field trainer.video_semi.appearance_weight = -1: must be >= 0");
  expect_error("video_semi { schedule { warmup_steps: 1 } image_frames: 5 }",
               "config field trainer.video_semi.image_frames = 5: must be in [0, "
               "dataset.clip.num_frames (4)]");
  expect_error("video_semi {}",
               "config field trainer.video_semi.schedule.warmup_steps = 0: must be > 0 without "
               "image_model");
  expect_error("video_semi { schedule { warmup_steps: 1 } image_backbone { tsm_r18 {} } }",
               "config field trainer.video_semi.image_backbone.tsm_r18.shift_div = 8: must "
               "exceed the widest stage (512 channels)");
  expect_error("video_semi { schedule { warmup_steps: 1 } image_backbone { tsm_r18 { "
               "width_multiplier: 0 } } }",
               "trainer.video_semi.image_backbone.tsm_r18.width_multiplier = 0");
  expect_error("video_semi { schedule { warmup_steps: 1 } pseudo_label { threshold: 2 } }",
               "config field trainer.video_semi.pseudo_label.threshold = 2");
  EXPECT_TRUE(Validate("video_semi { image_model: 'x.pt' }").ok());
  TrainerContext all_labeled = Context();
  all_labeled.dataset.set_labeled_fraction(1.0f);
  TrainerConfig config;
  config.mutable_video_semi()->mutable_schedule()->set_warmup_steps(1);
  const absl::Status s =
      ValidateTrainer(config, {"trainer", all_labeled.backbone, all_labeled.dataset});
  EXPECT_NE(
      s.message().find("config field trainer.video_semi: this method trains on unlabeled videos"),
      std::string::npos)
      << s;
}

}  // namespace
}  // namespace tb
