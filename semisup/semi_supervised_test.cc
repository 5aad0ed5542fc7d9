// The semi-supervised baselines on tiny CPU inputs: the shared pieces by
// hand (ramp-up, masking at the threshold, normalisation, temporal
// gradient, widths), each method's loss against an independent computation
// with the model in eval mode (so BatchNorm uses running statistics and the
// computation does not depend on how clips are batched), the EMA update
// values, CMPL's cross assignment, S4L's rotation labels, and checkpoint
// round trips of the extra models.
#include "semisup/semi_supervised.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "backbones/heads.h"
#include "core/checkpoint.h"
#include "core/testing/batch_norm_stats.h"
#include "core/testing/reference_tensors.h"
#include "core/testing/test_util.h"
#include "google/protobuf/text_format.h"
#include "ssl/losses.h"

namespace tb {
namespace {

namespace F = torch::nn::functional;

TEST(SemiSupervised, UnlabeledWeightWarmUpAndSigmoidRampUp) {
  UnlabeledSchedule s;
  s.set_weight(2.0f);
  s.set_warmup_steps(10);
  s.set_rampup_steps(20);
  EXPECT_EQ(UnlabeledWeight(s, 7.0, 0), 0.0);
  EXPECT_EQ(UnlabeledWeight(s, 7.0, 9), 0.0);
  EXPECT_NEAR(UnlabeledWeight(s, 7.0, 10), 2.0 * std::exp(-5.0), 1e-12);
  EXPECT_NEAR(UnlabeledWeight(s, 7.0, 20), 2.0 * std::exp(-1.25), 1e-12);
  EXPECT_NEAR(UnlabeledWeight(s, 7.0, 30), 2.0, 1e-12);
  EXPECT_NEAR(UnlabeledWeight(s, 7.0, 1000), 2.0, 1e-12);
  EXPECT_FALSE(RampUpDone(s, 29));
  EXPECT_TRUE(RampUpDone(s, 30));
  UnlabeledSchedule unset;  // the method's reference weight, at once
  EXPECT_EQ(UnlabeledWeight(unset, 7.0, 0), 7.0);
}

TEST(SemiSupervised, PseudoLabelsAreMaskedAtTheThreshold) {
  const torch::Tensor p = torch::tensor({{0.95f, 0.05f}, {0.3f, 0.7f}, {0.5f, 0.5f}});
  const PseudoLabels pl = MakePseudoLabels(p, 0.7f);
  EXPECT_TRUE(torch::equal(pl.labels, torch::tensor({0, 1, 0}, torch::kInt64)));
  // max >= threshold selects: 0.7 is selected at 0.7, 0.5 is not.
  EXPECT_TRUE(torch::equal(pl.mask, torch::tensor({1.0f, 1.0f, 0.0f})));
  EXPECT_TRUE(torch::equal(MakePseudoLabels(p, 0.96f).mask, torch::tensor({0.0f, 0.0f, 0.0f})));
  const PseudoLabels twice = RepeatPseudoLabels(pl, 2);
  EXPECT_TRUE(torch::equal(twice.labels, torch::tensor({0, 1, 0, 0, 1, 0}, torch::kInt64)));

  // Loss by hand: CE of each row against its label, masked.
  const torch::Tensor logits = torch::tensor({{2.0f, 0.0f}, {0.0f, 1.0f}, {3.0f, -1.0f}});
  const double ce0 = std::log(1 + std::exp(-2.0)), ce1 = std::log(1 + std::exp(-1.0));
  EXPECT_NEAR(PseudoLabelLoss(logits, pl, PseudoLabelOptions::ALL).item<double>(), (ce0 + ce1) / 3,
              1e-6);
  EXPECT_NEAR(PseudoLabelLoss(logits, pl, PseudoLabelOptions::SELECTED).item<double>(),
              (ce0 + ce1) / 2, 1e-6);
  const PseudoLabels none = MakePseudoLabels(p, 0.99f);
  EXPECT_EQ(PseudoLabelLoss(logits, none, PseudoLabelOptions::SELECTED).item<double>(), 0.0);

  std::map<std::string, double> m;
  AddPseudoLabelMetrics(pl, torch::tensor({0, 0, 0}, torch::kInt64), "x_", &m);
  EXPECT_NEAR(m.at("x_mask_rate"), 2.0 / 3, 1e-9);
  EXPECT_NEAR(m.at("x_pl_acc_all"), 2.0 / 3, 1e-6);
  EXPECT_NEAR(m.at("x_pl_acc_selected"), 0.5, 1e-9);
}

TEST(SemiSupervised, TemporalGradientIsTheFrameDifference) {
  // [B=1, C=1, T=3, 1, 2]: frames (1, 2), (4, 0), (4, 7).
  const torch::Tensor clip =
      torch::tensor({1.0f, 2.0f, 4.0f, 0.0f, 4.0f, 7.0f}).view({1, 1, 3, 1, 2});
  const torch::Tensor tg = TemporalGradient(clip);
  ASSERT_EQ(tg.sizes(), (std::vector<int64_t>{1, 1, 2, 1, 2}));
  EXPECT_TRUE(torch::equal(tg.flatten(), torch::tensor({3.0f, -2.0f, 0.0f, 7.0f})));
  // A static clip has a zero temporal gradient.
  EXPECT_EQ(TemporalGradient(torch::ones({2, 3, 4, 5, 5})).abs().max().item<float>(), 0.0f);
}

TEST(SemiSupervised, BackboneWidthScales) {
  BackboneConfig c;
  c.mutable_r2plus1d()->set_width_multiplier(0.5f);
  auto scaled = ScaleBackboneWidth(c, 0.25f);
  ASSERT_TRUE(scaled.ok()) << scaled.status();
  EXPECT_FLOAT_EQ(scaled->r2plus1d().width_multiplier(), 0.125f);
  EXPECT_FALSE(ScaleBackboneWidth(BackboneConfig(), 0.25f).ok());
}

// --- Trainers, built by name through the registry. ---

constexpr int kClasses = 4;

// The context every trainer here is built in: a tiny R3D, 4-frame clips.
TrainerContext Context() {
  TrainerContext context;
  context.backbone.mutable_r3d18()->set_width_multiplier(0.0625f);
  context.backbone.set_num_classes(kClasses);
  context.backbone.set_dropout(0.0f);
  context.dataset.mutable_clip()->set_num_frames(4);
  context.dataset.set_labeled_fraction(0.5f);
  context.total_steps = 10;
  return context;
}

TrainerConfig Config(const std::string& trainer_text) {
  TrainerConfig t;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(trainer_text, &t)) << trainer_text;
  return t;
}

std::unique_ptr<Trainer> Make(const TrainerConfig& config, int seed = 0) {
  torch::manual_seed(seed);
  TrainerScope scope;
  scope.path = "trainer";
  scope.backbone = Context().backbone;
  scope.dataset = Context().dataset;
  const absl::Status valid = ValidateTrainer(config, scope);
  EXPECT_TRUE(valid.ok()) << valid;
  auto trainer = CreateTrainer(config, Context());
  EXPECT_TRUE(trainer.ok()) << trainer.status();
  return trainer.ok() ? std::move(*trainer) : nullptr;
}

// A batch with every view the samplers here produce: "clip"/clips,
// "weak" and "strong" (one clip each).
ClipBatch Batch(int n, int seed) {
  torch::manual_seed(seed);
  ClipBatch b;
  b.clips = torch::randn({n, 3, 4, 16, 16});
  b.views["weak"] = b.clips.unsqueeze(1);
  b.views["strong"] = (b.clips + 0.5 * torch::randn({n, 3, 4, 16, 16})).unsqueeze(1);
  b.views["clip"] = b.clips.unsqueeze(1);
  b.labels = torch::randint(0, kClasses, {n}, torch::kInt64);
  for (int i = 0; i < n; ++i) b.paths.push_back("v" + std::to_string(i));
  return b;
}

VideoBackbone& Module(Trainer& t, const std::string& name) {
  for (auto& [n, m] : t.CheckpointModules()) {
    if (n == name) return *dynamic_cast<VideoBackbone*>(m);
  }
  ADD_FAILURE() << "no checkpoint module " << name;
  return t.EvaluationModel();
}

torch::Tensor Logits(VideoBackbone& m, const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  return m.forward(x);
}

TEST(SemiSupervisedTrainers, PseudoLabelSelectsOnlyConfidentClips) {
  const ClipBatch lb = Batch(2, 1), ub = Batch(3, 2);
  for (float threshold : {0.0f, 1.0f}) {
    auto t = Make(Config("pseudo_label { pseudo_label { threshold: " + std::to_string(threshold) +
                         " } schedule { weight: 2 } }"));
    t->SetTraining(false);
    auto r = t->Step({&lb, &ub, 0});
    ASSERT_TRUE(r.ok()) << r.status();
    const torch::Tensor lu = Logits(t->EvaluationModel(), ub.clips);
    const torch::Tensor ll = Logits(t->EvaluationModel(), lb.clips);
    const double ce = F::cross_entropy(ll, lb.labels).item<double>();
    // threshold 0: every clip trains on its own argmax; 1: none is confident.
    const double expected_u =
        threshold == 0.0f ? F::cross_entropy(lu, lu.argmax(1)).item<double>() : 0.0;
    EXPECT_NEAR(r->metrics.at("mask_rate"), threshold == 0.0f ? 1.0 : 0.0, 1e-9);
    EXPECT_NEAR(r->metrics.at("loss_u"), expected_u, 1e-5);
    EXPECT_NEAR(r->loss.item<double>(), ce + 2 * expected_u, 1e-5);
  }
}

TEST(SemiSupervisedTrainers, FixMatchTrainsTheStrongViewOnTheWeakViewsLabels) {
  const ClipBatch lb = Batch(2, 1), ub = Batch(3, 2);
  for (bool shared : {true, false}) {
    auto t = Make(Config(std::string("fixmatch { pseudo_label { threshold: 0 } "
                                     "shared_bn_forward: ") +
                         (shared ? "true" : "false") + " }"));
    EXPECT_EQ(t->UnlabeledSampler().kind_case(), SamplerConfig::kWeakStrong);
    t->SetTraining(false);
    auto r = t->Step({&lb, &ub, 0});
    ASSERT_TRUE(r.ok()) << r.status();
    VideoBackbone& m = t->EvaluationModel();
    const torch::Tensor weak = Logits(m, ub.views.at("weak").squeeze(1));
    const torch::Tensor strong = Logits(m, ub.views.at("strong").squeeze(1));
    const double expected = F::cross_entropy(strong, weak.argmax(1)).item<double>();
    EXPECT_NEAR(r->metrics.at("loss_u"), expected, 1e-5);
    const double ce = F::cross_entropy(Logits(m, lb.clips), lb.labels).item<double>();
    EXPECT_NEAR(r->loss.item<double>(), ce + expected, 1e-5);
  }
}

// 1 - mean cosine over channels of L2-normalised maps (LTG's CosineSimiLoss).
double CosineDistance(const torch::Tensor& a, const torch::Tensor& b) {
  const auto unit = F::NormalizeFuncOptions().dim(1);
  return 1 - F::cosine_similarity(F::normalize(a, unit), F::normalize(b, unit),
                                  F::CosineSimilarityFuncOptions().dim(1))
                 .mean()
                 .item<double>();
}

TEST(SemiSupervisedTrainers, TgFixMatchFollowsLtg) {
  const ClipBatch lb = Batch(2, 1), ub = Batch(3, 2);
  auto t = Make(Config("tg_fixmatch { pseudo_label { threshold: 0 } }"));
  // The TG network of its own and the cross-view contrast's heads.
  ASSERT_EQ(t->CheckpointModules().size(), 3u);
  EXPECT_EQ(t->PreciseBnReferenceBatches(), 200);
  t->SetTraining(false);
  auto r = t->Step({&lb, &ub, 0});
  ASSERT_TRUE(r.ok()) << r.status();
  VideoBackbone& m = t->EvaluationModel();
  VideoBackbone& tg = Module(*t, "tg_model");
  const torch::Tensor weak = ub.views.at("weak").squeeze(1);
  const torch::Tensor strong = ub.views.at("strong").squeeze(1);
  // The pseudo-label: argmax of the averaged logits.
  const torch::Tensor pl = (Logits(m, weak) + Logits(tg, TemporalGradient(weak))).argmax(1);
  const double u_rgb = F::cross_entropy(Logits(m, strong), pl).item<double>();
  const double u_tg = F::cross_entropy(Logits(tg, TemporalGradient(strong)), pl).item<double>();
  EXPECT_NEAR(r->metrics.at("loss_u_rgb"), u_rgb, 1e-5);
  EXPECT_NEAR(r->metrics.at("loss_u_tg"), u_tg, 1e-5);
  const double ce_rgb = F::cross_entropy(Logits(m, lb.clips), lb.labels).item<double>();
  const double ce_tg =
      F::cross_entropy(Logits(tg, TemporalGradient(lb.clips)), lb.labels).item<double>();
  EXPECT_NEAR(r->metrics.at("loss_ce_tg"), ce_tg, 1e-5);
  // Alignment: every stage's map on the labeled + weak clips; the TG maps
  // (3 frames) resampled in time to the RGB maps' length.
  const torch::Tensor x = torch::cat({lb.clips, weak});
  std::vector<torch::Tensor> a, b;
  {
    torch::NoGradGuard no_grad;
    a = m.StageFeatureMaps(x);
    b = tg.StageFeatureMaps(TemporalGradient(x));
  }
  ASSERT_EQ(a.size(), 4u);
  EXPECT_NE(a[0].size(2), b[0].size(2));
  double align = 0;
  for (size_t s = 0; s < a.size(); ++s) {
    const std::vector<int64_t> size(a[s].sizes().begin() + 2, a[s].sizes().end());
    const torch::Tensor resampled = F::interpolate(
        b[s], F::InterpolateFuncOptions().size(size).mode(torch::kTrilinear).align_corners(false));
    const double d = CosineDistance(a[s], resampled);
    EXPECT_NEAR(r->metrics.at("loss_align_stage" + std::to_string(s + 1)), d, 1e-5);
    align += d;
  }
  EXPECT_NEAR(r->metrics.at("loss_align"), align, 1e-5);
  // Cross-view contrast: each view's head on the pooled last-stage features
  // of the labeled + weak clips, at weight 0.5.
  torch::nn::Module* heads = nullptr;
  for (auto& [name, module] : t->CheckpointModules()) {
    if (name == "contrast_heads") heads = module;
  }
  ASSERT_NE(heads, nullptr);
  auto* head_rgb = dynamic_cast<ProjectionHeadImpl*>(heads->named_children()["rgb"].get());
  auto* head_tg = dynamic_cast<ProjectionHeadImpl*>(heads->named_children()["tg"].get());
  ASSERT_TRUE(head_rgb != nullptr && head_tg != nullptr);
  double contrast = 0;
  {
    torch::NoGradGuard no_grad;
    const torch::Tensor e_rgb = head_rgb->forward(a.back().mean({2, 3, 4}));
    const torch::Tensor e_tg = head_tg->forward(b.back().mean({2, 3, 4}));
    EXPECT_EQ(e_rgb.size(0), x.size(0));
    contrast = CrossViewContrastLoss(e_rgb, e_tg, 0.5).item<double>();
  }
  EXPECT_NEAR(r->metrics.at("loss_contrast"), contrast, 1e-5);
  EXPECT_NEAR(r->loss.item<double>(),
              0.5 * (ce_rgb + ce_tg + u_rgb + u_tg) + align + 0.5 * contrast, 1e-4);

  // MvPL without its flow view: one network, RGB and TG, no alignment.
  auto mvpl = Make(Config("mvpl { pseudo_label { threshold: 0 } flow_view: false }"));
  EXPECT_EQ(mvpl->CheckpointModules().size(), 1u);
  EXPECT_EQ(mvpl->PreciseBnReferenceBatches(), 200);
  EXPECT_FALSE(mvpl->LabeledSampler().has_flow());
  EXPECT_FALSE(mvpl->UnlabeledSampler().has_flow());
  mvpl->SetTraining(false);
  auto r2 = mvpl->Step({&lb, &ub, 0});
  ASSERT_TRUE(r2.ok()) << r2.status();
  EXPECT_EQ(r2->metrics.count("loss_align"), 0u);
  EXPECT_EQ(r2->metrics.count("loss_contrast"), 0u);
  EXPECT_EQ(r2->metrics.count("loss_u_tg"), 1u);
  EXPECT_EQ(r2->metrics.count("loss_u_flow"), 0u);
}

// Adds flow companions [B, 1, 2, T, S, S] to a test batch's views.
void AddFlow(ClipBatch* b, const std::vector<std::string>& views, int seed) {
  torch::manual_seed(seed);
  for (const std::string& v : views) {
    const torch::Tensor& rgb = b->views.at(v);
    b->views[v + "_flow"] = torch::rand({rgb.size(0), rgb.size(1), 2, rgb.size(3), rgb.size(4),
                                         rgb.size(5)}) * 2 - 1;
  }
}

// MvPL's three views: the flow clips enter the RGB network through the
// (x, y, 0)-initialised 1x1x1 convolution, join the pseudo-label average
// and get their own CE and unlabeled loss at weight 0.5.
TEST(SemiSupervisedTrainers, MvplTrainsItsFlowViewThroughTheSharedNetwork) {
  ClipBatch lb = Batch(2, 1), ub = Batch(3, 2);
  AddFlow(&lb, {"clip"}, 5);
  AddFlow(&ub, {"weak", "strong"}, 6);
  auto t = Make(Config("mvpl { pseudo_label { threshold: 0 } }"));
  EXPECT_TRUE(t->LabeledSampler().has_flow());
  EXPECT_TRUE(t->UnlabeledSampler().has_flow());
  EXPECT_TRUE(t->UnlabeledSampler().flow().normalize());
  ASSERT_EQ(t->CheckpointModules().size(), 2u);
  EXPECT_EQ(t->CheckpointModules()[1].first, "flow_input");
  t->SetTraining(false);
  auto r = t->Step({&lb, &ub, 0});
  ASSERT_TRUE(r.ok()) << r.status();
  VideoBackbone& m = t->EvaluationModel();
  // The initial flow input is (x, y, 0).
  const auto as_rgb = [](const torch::Tensor& flow) {
    return torch::cat({flow, torch::zeros_like(flow.slice(1, 0, 1))}, 1);
  };
  const torch::Tensor xl = lb.clips, weak = ub.views.at("weak").squeeze(1);
  const torch::Tensor strong = ub.views.at("strong").squeeze(1);
  const torch::Tensor fl = lb.views.at("clip_flow").squeeze(1);
  const torch::Tensor fw = ub.views.at("weak_flow").squeeze(1);
  const torch::Tensor fs = ub.views.at("strong_flow").squeeze(1);
  // Pseudo-labels: argmax of the mean of the three views' weak logits.
  const torch::Tensor pl = ((Logits(m, weak) + Logits(m, TemporalGradient(weak)) +
                             Logits(m, as_rgb(fw))) / 3).argmax(1);
  const torch::Tensor y = lb.labels;
  const double ce_flow = F::cross_entropy(Logits(m, as_rgb(fl)), y).item<double>();
  const double u_flow = F::cross_entropy(Logits(m, as_rgb(fs)), pl).item<double>();
  const double u_rgb = F::cross_entropy(Logits(m, strong), pl).item<double>();
  EXPECT_NEAR(r->metrics.at("loss_ce_flow"), ce_flow, 1e-5);
  EXPECT_NEAR(r->metrics.at("loss_u_flow"), u_flow, 1e-5);
  EXPECT_NEAR(r->metrics.at("loss_u_rgb"), u_rgb, 1e-5);
  const double total = 0.5 * (r->metrics.at("loss_ce_rgb") + r->metrics.at("loss_ce_tg") +
                              ce_flow + r->metrics.at("loss_u_rgb") +
                              r->metrics.at("loss_u_tg") + u_flow);
  EXPECT_NEAR(r->loss.item<double>(), total, 1e-4);
  // The flow input is trained.
  r->loss.backward();
  bool flow_input_has_gradient = false;
  for (const torch::Tensor& p : t->CheckpointModules()[1].second->parameters()) {
    flow_input_has_gradient |= p.grad().defined() && p.grad().abs().sum().item<double>() > 0;
  }
  EXPECT_TRUE(flow_input_has_gradient);
  // A batch without the flow views is an error naming the view.
  const ClipBatch plain = Batch(2, 1);
  auto missing = t->Step({&plain, &ub, 0});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(std::string(missing.status().message()).find("clip_flow"), std::string::npos)
      << missing.status();
}

TEST(SemiSupervisedTrainers, TgFixMatchKeepsTheEarlierRulesAsOptions) {
  const ClipBatch lb = Batch(2, 1), ub = Batch(3, 2);
  auto t = Make(Config(
      "tg_fixmatch { pseudo_label { threshold: 0 } separate_tg_model: false view_weight: 1 "
      "pseudo_label_source: AVERAGED_PROBABILITIES alignment_features: POOLED_WEAK "
      "alignment_detach_tg: false cross_view_contrast { weight: 0 } }"));
  ASSERT_EQ(t->CheckpointModules().size(), 1u);
  t->SetTraining(false);
  auto r = t->Step({&lb, &ub, 0});
  ASSERT_TRUE(r.ok()) << r.status();
  VideoBackbone& m = t->EvaluationModel();
  const torch::Tensor weak = ub.views.at("weak").squeeze(1);
  const torch::Tensor strong = ub.views.at("strong").squeeze(1);
  const torch::Tensor p =
      (torch::softmax(Logits(m, weak), 1) + torch::softmax(Logits(m, TemporalGradient(weak)), 1)) /
      2;
  const torch::Tensor pl = p.argmax(1);
  const double u_rgb = F::cross_entropy(Logits(m, strong), pl).item<double>();
  const double u_tg = F::cross_entropy(Logits(m, TemporalGradient(strong)), pl).item<double>();
  EXPECT_NEAR(r->metrics.at("loss_u_rgb"), u_rgb, 1e-5);
  EXPECT_NEAR(r->metrics.at("loss_u_tg"), u_tg, 1e-5);
  torch::Tensor g_rgb, g_tg;
  {
    torch::NoGradGuard no_grad;
    g_rgb = m.Features(weak);
    g_tg = m.Features(TemporalGradient(weak));
  }
  const double align = CosineDistance(g_rgb, g_tg);
  EXPECT_NEAR(r->metrics.at("loss_align"), align, 1e-5);
  const double ce = F::cross_entropy(Logits(m, lb.clips), lb.labels).item<double>() +
                    F::cross_entropy(Logits(m, TemporalGradient(lb.clips)), lb.labels)
                        .item<double>();
  EXPECT_NEAR(r->loss.item<double>(), ce + u_rgb + u_tg + align, 1e-4);
}

// LTG's reductions (semisup/testdata/multiview_reference.py): FixMatch's
// unlabeled loss (recognizer3d_semi.py, SemiRecognizer3D.forward_train;
// google-research/fixmatch's mean of the masked CE), MvPL's
// (recognizer3d_semi_multiview.py, Semi_MV_Recognizer3D.forward_train) and
// TG-FixMatch's (recognizer3d_semi_appsup_tempsup_simclr_crossclip_ptv.py,
// Semi_AppSup_TempSup_SimCLR_Crossclip_PTV_Recognizer3D.forward_train with
// cosine_simi_loss.py's CosineSimiLoss and the 'crossview_sameclip' contrast
// of simclr_loss_ptv_new.py's SimCLRLoss_PTV_New), values and gradients in
// float64.
TEST(MultiViewLossParity, MatchesLtgsFixMatchMvplAndTgFixMatch) {
  const auto refs = ::tb::testing::RunReferenceTensors("semisup/testdata/multiview_reference.py",
                                                       "multiview_reference.txt");
  ASSERT_TRUE(refs.ok()) << refs.status();
  const auto ref = [&](const std::string& name) {
    const auto it = refs->find(name);
    EXPECT_NE(it, refs->end()) << name;
    return it == refs->end() ? torch::Tensor() : it->second;
  };
  const auto expect_close = [](const torch::Tensor& actual, const torch::Tensor& expected,
                               const std::string& what) {
    ASSERT_TRUE(actual.defined()) << what;
    ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
    EXPECT_LT((actual.to(torch::kDouble) - expected).abs().max().item<double>(), 1e-5) << what;
  };
  const float threshold = ref("threshold").item<float>();

  // FixMatch.
  const torch::Tensor strong = ref("fixmatch_strong").requires_grad_(true);
  const PseudoLabels pl = MakePseudoLabels(torch::softmax(ref("fixmatch_weak"), 1), threshold);
  const torch::Tensor fixmatch = PseudoLabelLoss(strong, pl, PseudoLabelOptions::ALL);
  EXPECT_EQ(fixmatch.scalar_type(), torch::kDouble);
  expect_close(fixmatch, ref("fixmatch_loss"), "fixmatch loss");
  expect_close(fixmatch, ref("fixmatch_google_loss"), "fixmatch loss (google-research form)");
  fixmatch.backward();
  expect_close(strong.grad(), ref("fixmatch_grad_strong"), "fixmatch gradient");

  // MvPL and TG-FixMatch.
  const torch::Tensor labels = ref("labels").to(torch::kLong);
  const int64_t nl = labels.size(0), nu = ref("fixmatch_weak").size(0);
  for (const std::string method : {"mvpl", "tg"}) {
    SCOPED_TRACE(method);
    const bool tg = method == "tg";
    std::vector<MultiViewOutputs> views(2);
    const char* names[2] = {"rgb", "tg"};
    for (int v = 0; v < 2; ++v) {
      views[v].logits = ref(std::string("logits_") + names[v]).clone().requires_grad_(true);
      for (int s = 0; s < 4; ++s) {
        views[v].stages.push_back(
            ref("stage" + std::to_string(s) + "_" + names[v]).clone().requires_grad_(true));
      }
      views[v].contrast_embedding =
          ref(std::string("contrast_embedding_") + names[v]).clone().requires_grad_(true);
    }
    MultiViewLossOptions o;
    o.threshold = threshold;
    o.alignment_weight = tg ? 1.0 : 0.0;
    o.contrast_weight = tg ? ref("contrast_weight").item<double>() : 0.0;
    o.contrast_temperature = ref("contrast_temperature").item<double>();
    const MultiViewLoss loss = ComputeMultiViewLoss(views, labels, nl, nu, o);
    const std::string p = method + "_";
    expect_close(loss.pseudo_labels.labels, ref(p + "pseudo_labels"), "pseudo-labels");
    expect_close(loss.pseudo_labels.mask, ref(p + "mask"), "mask");
    for (int v = 0; v < 2; ++v) {
      expect_close(loss.ce[v], ref(p + "ce_" + names[v]), std::string("CE ") + names[v]);
      expect_close(loss.unlabeled[v], ref(p + "u_" + names[v]), std::string("U ") + names[v]);
    }
    if (tg) {
      ASSERT_EQ(loss.alignment_stages.size(), 4u);
      for (int s = 0; s < 4; ++s) {
        expect_close(loss.alignment_stages[s], ref("tg_align" + std::to_string(s)),
                     "alignment stage " + std::to_string(s));
      }
      expect_close(loss.contrast, ref("tg_contrast"), "cross-view contrast");
    } else {
      EXPECT_FALSE(loss.alignment.defined());
      EXPECT_FALSE(loss.contrast.defined());
    }
    expect_close(loss.total, ref(p + "loss"), "total");
    loss.total.backward();
    for (int v = 0; v < 2; ++v) {
      expect_close(views[v].logits.grad(),
                   ref(p + (tg ? "grad_logits_" : "grad_") + names[v]),
                   std::string("logits gradient ") + names[v]);
      if (!tg) continue;
      expect_close(views[v].contrast_embedding.grad(),
                   ref(std::string("tg_grad_contrast_") + names[v]),
                   std::string("contrast gradient ") + names[v]);
      for (int s = 0; s < 4; ++s) {
        const std::string name = "tg_grad_stage" + std::to_string(s) + "_" + names[v];
        const torch::Tensor g = views[v].stages[s].grad();
        // The detached TG maps get no gradient at all.
        expect_close(g.defined() ? g : torch::zeros_like(views[v].stages[s]), ref(name), name);
      }
    }
  }

  // MvPL's three views (RGB, TG, flow): pseudo-labels from the mean of the
  // three weak logits, each view's CE and unlabeled loss weighted 0.5.
  std::vector<MultiViewOutputs> views(3);
  const char* names[3] = {"rgb", "tg", "flow"};
  for (int v = 0; v < 3; ++v) {
    views[v].logits = ref(std::string("logits_") + names[v]).clone().requires_grad_(true);
  }
  MultiViewLossOptions o;
  o.threshold = threshold;
  const MultiViewLoss loss = ComputeMultiViewLoss(views, labels, nl, nu, o);
  expect_close(loss.pseudo_labels.labels, ref("mvpl3_pseudo_labels"), "3-view pseudo-labels");
  expect_close(loss.pseudo_labels.mask, ref("mvpl3_mask"), "3-view mask");
  ASSERT_EQ(loss.ce.size(), 3u);
  for (int v = 0; v < 3; ++v) {
    expect_close(loss.ce[v], ref(std::string("mvpl3_ce_") + names[v]), names[v]);
    expect_close(loss.unlabeled[v], ref(std::string("mvpl3_u_") + names[v]), names[v]);
  }
  expect_close(loss.total, ref("mvpl3_loss"), "3-view total");
  loss.total.backward();
  for (int v = 0; v < 3; ++v) {
    expect_close(views[v].logits.grad(), ref(std::string("mvpl3_grad_") + names[v]),
                 std::string("3-view logits gradient ") + names[v]);
  }
}

TEST(SemiSupervisedTrainers, CmplTrainsEachModelOnTheOthersPseudoLabels) {
  const ClipBatch lb = Batch(2, 1), ub = Batch(6, 3);
  auto t = Make(Config("cmpl { pseudo_label { threshold: 0 } }"));
  t->SetTraining(false);
  auto r = t->Step({&lb, &ub, 0});
  ASSERT_TRUE(r.ok()) << r.status();
  VideoBackbone& f = Module(*t, "model");
  VideoBackbone& a = Module(*t, "auxiliary");
  EXPECT_EQ(&f, &t->EvaluationModel());
  // The auxiliary model is a quarter as wide.
  EXPECT_EQ(a.feature_dim() * 4, f.feature_dim());
  const torch::Tensor weak = ub.views.at("weak").squeeze(1);
  const torch::Tensor strong = ub.views.at("strong").squeeze(1);
  const torch::Tensor f_weak = Logits(f, weak), a_weak = Logits(a, weak);
  const torch::Tensor f_strong = Logits(f, strong), a_strong = Logits(a, strong);
  ASSERT_FALSE(torch::equal(f_weak.argmax(1), a_weak.argmax(1)))
      << "models agree on every clip; the cross assignment would not be observable";
  EXPECT_NEAR(r->metrics.at("loss_u"), F::cross_entropy(f_strong, a_weak.argmax(1)).item<double>(),
              1e-5);
  EXPECT_NEAR(r->metrics.at("loss_u_aux"),
              F::cross_entropy(a_strong, f_weak.argmax(1)).item<double>(), 1e-5);
  EXPECT_GT(std::abs(r->metrics.at("loss_u") -
                     F::cross_entropy(f_strong, f_weak.argmax(1)).item<double>()),
            1e-6);
  // Both models are trained.
  EXPECT_EQ(t->TrainableParameters().size(), f.parameters().size() + a.parameters().size());
}

TEST(SemiSupervisedTrainers, MeanTeacherEmaValuesAndConsistency) {
  auto t =
      Make(Config("mean_teacher { ema_decay: 0.9 ema_decay_after_rampup: 0.99 "
                  "schedule { weight: 3 rampup_steps: 4 } }"));
  VideoBackbone& student = Module(*t, "model");
  VideoBackbone& teacher = Module(*t, "ema_teacher");
  EXPECT_EQ(&teacher, &t->EvaluationModel());
  auto first = [](VideoBackbone& m) { return m.named_parameters()["stem.0.weight"]; };
  // Starts as a copy of the student.
  EXPECT_TRUE(torch::equal(first(student), first(teacher)));
  {
    torch::NoGradGuard no_grad;
    for (auto& p : student.parameters()) p.add_(1.0);
  }
  const torch::Tensor s = first(student).clone(), before = first(teacher).clone();
  t->AfterOptimizerStep(1);  // 2 steps done: a = min(1 - 1/3, 0.9) = 2/3 (ramp-up running)
  EXPECT_TRUE(torch::allclose(first(teacher), (2.0 / 3) * before + (1.0 / 3) * s, 1e-6, 1e-6));
  const torch::Tensor mid = first(teacher).clone();
  t->AfterOptimizerStep(19);  // 20 steps done, ramp-up over: a = min(1 - 1/21, 0.99) = 20/21
  EXPECT_TRUE(torch::allclose(first(teacher), (20.0 / 21) * mid + (1.0 / 21) * s, 1e-6, 1e-6));
  t->AfterOptimizerStep(1000);  // a = 0.99
  // Consistency term by hand: student on "weak", teacher on "strong", over
  // labeled and unlabeled clips; weight ramped up at step 2 of 4.
  const ClipBatch lb = Batch(2, 1), ub = Batch(3, 2);
  t->SetTraining(false);
  auto r = t->Step({&lb, &ub, 2});
  ASSERT_TRUE(r.ok()) << r.status();
  const torch::Tensor ps = torch::softmax(
      Logits(student, torch::cat({lb.views.at("weak"), ub.views.at("weak")}).squeeze(1)), 1);
  const torch::Tensor pt = torch::softmax(
      Logits(teacher, torch::cat({lb.views.at("strong"), ub.views.at("strong")}).squeeze(1)), 1);
  const double consistency = (ps - pt).pow(2).mean().item<double>();
  EXPECT_NEAR(r->metrics.at("loss_consistency"), consistency, 1e-6);
  EXPECT_NEAR(r->metrics.at("weight_u"), 3 * std::exp(-5 * 0.25), 1e-9);
  for (const auto& p : teacher.parameters()) EXPECT_FALSE(p.requires_grad());
}

// The teacher starts from the student as it is at the first step (after
// init_checkpoint was loaded into it, which happens after the trainer is
// built). OWN_BATCH (default, the reference): the teacher trains in train
// mode and keeps its own BatchNorm statistics through the EMA update;
// COPY_STUDENT: eval mode, statistics copied from the student.
TEST(SemiSupervisedTrainers, MeanTeacherStartsFromTheLoadedStudentAndOwnsItsBatchNorm) {
  for (const std::string mode : {"OWN_BATCH", "COPY_STUDENT"}) {
    SCOPED_TRACE(mode);
    auto t = Make(Config("mean_teacher { teacher_batch_norm: " + mode + " }"));
    VideoBackbone& student = Module(*t, "model");
    VideoBackbone& teacher = Module(*t, "ema_teacher");
    {
      torch::NoGradGuard no_grad;  // stands in for loading init_checkpoint
      for (auto& p : student.parameters()) p.add_(0.5);
    }
    std::string stat;
    for (const auto& b : teacher.named_buffers()) {
      if (b.key().find("running_mean") != std::string::npos) {
        stat = b.key();
        break;
      }
    }
    ASSERT_FALSE(stat.empty());
    t->SetTraining(true);
    EXPECT_EQ(teacher.is_training(), mode == "OWN_BATCH");
    const ClipBatch lb = Batch(2, 1), ub = Batch(3, 2);
    auto r = t->Step({&lb, &ub, 0});
    ASSERT_TRUE(r.ok()) << r.status();
    for (const auto& p : student.named_parameters()) {
      EXPECT_TRUE(torch::equal(p.value(), teacher.named_parameters()[p.key()])) << p.key();
    }
    // The two models saw different batches (weak vs strong views).
    const torch::Tensor own = teacher.named_buffers()[stat].clone();
    ASSERT_FALSE(torch::equal(own, student.named_buffers()[stat]));
    t->AfterOptimizerStep(0);
    const torch::Tensor after = teacher.named_buffers()[stat];
    if (mode == "OWN_BATCH") {
      EXPECT_TRUE(torch::equal(after, own));
    } else {
      EXPECT_TRUE(torch::equal(after, student.named_buffers()[stat]));
    }
  }
}

TEST(SemiSupervisedTrainers, S4lRotationLabelsAreTheFourRotations) {
  const ClipBatch lb = Batch(2, 1), ub = Batch(3, 2);
  auto t = Make(Config("s4l { schedule { weight: 0.5 } }"));
  t->SetTraining(false);
  auto r = t->Step({&lb, &ub, 0});
  ASSERT_TRUE(r.ok()) << r.status();
  torch::nn::Module* pretext = nullptr;
  for (auto& [n, m] : t->CheckpointModules()) {
    if (n == "pretext") pretext = m;
  }
  ASSERT_NE(pretext, nullptr);
  auto head = pretext->named_children()["rotation_head"]->as<torch::nn::LinearImpl>();
  ASSERT_NE(head, nullptr);
  VideoBackbone& m = t->EvaluationModel();
  // Every clip of the step (2 labeled, then 3 unlabeled) rotated by 0, 90,
  // 180 and 270 degrees, labels 0..3.
  const torch::Tensor labels = torch::arange(4, torch::kInt64).repeat_interleave(5);
  const torch::Tensor all = torch::cat({lb.clips, ub.clips});
  const torch::Tensor rotated = ssl::RotateClips(all.repeat({4, 1, 1, 1, 1}), labels);
  torch::Tensor logits;
  {
    torch::NoGradGuard no_grad;
    logits = head->forward(m.Features(rotated));
  }
  const double rotation = F::cross_entropy(logits, labels).item<double>();
  EXPECT_NEAR(r->metrics.at("loss_pretext"), rotation, 1e-5);
  const double ce = F::cross_entropy(Logits(m, lb.clips), lb.labels).item<double>();
  EXPECT_NEAR(r->loss.item<double>(), ce + 0.5 * rotation, 1e-5);
  // The rotation head is trained with the backbone.
  EXPECT_EQ(t->TrainableParameters().size(), m.parameters().size() + 2);
}

TEST(SemiSupervisedTrainers, SelfDistillationMatchesTheFrozenTeacher) {
  // The teacher: a supervised model's checkpoint.
  const std::string ckpt = testing::TmpPath("sd_teacher.pt");
  auto sup = Make(Config("supervised {}"), 7);
  sup->SetTraining(false);
  // Trained-looking BatchNorm statistics: the teacher's folded BatchNorms
  // (the default, fold_teacher) then change its weights noticeably.
  testing::RandomizeBatchNormStatistics(sup->EvaluationModel());
  CheckpointContents c;
  c.modules = sup->CheckpointModules();
  ASSERT_TRUE(SaveCheckpoint(ckpt, c).ok());
  auto t = Make(Config("self_distillation { teacher: '" + ckpt +
                       "' labeled_weight: 2 unlabeled_weight: 3 }"));
  const ClipBatch lb = Batch(2, 1), ub = Batch(3, 2);
  t->SetTraining(false);
  auto r = t->Step({&lb, &ub, 0});
  ASSERT_TRUE(r.ok()) << r.status();
  const torch::Tensor x = torch::cat({lb.clips, ub.clips});
  const torch::Tensor pt = torch::softmax(Logits(sup->EvaluationModel(), x), 1);
  const torch::Tensor logits = Logits(t->EvaluationModel(), x);
  const torch::Tensor ps = torch::softmax(logits, 1);
  const double dl = (ps.slice(0, 0, 2) - pt.slice(0, 0, 2)).pow(2).mean().item<double>();
  const double du = (ps.slice(0, 2) - pt.slice(0, 2)).pow(2).mean().item<double>();
  EXPECT_NEAR(r->metrics.at("loss_distill_l"), dl, 1e-6);
  EXPECT_NEAR(r->metrics.at("loss_distill_u"), du, 1e-6);
  const double ce = F::cross_entropy(logits.slice(0, 0, 2), lb.labels).item<double>();
  EXPECT_NEAR(r->loss.item<double>(), ce + 2 * dl + 3 * du, 1e-5);
  // The same with the teacher unfolded, and channels-last: the rounding of
  // the fold is all that differs.
  for (const std::string& how : {std::string("fold_teacher: false"),
                                 std::string("teacher_channels_last: true")}) {
    SCOPED_TRACE(how);
    auto other = Make(Config("self_distillation { teacher: '" + ckpt +
                             "' labeled_weight: 2 unlabeled_weight: 3 " + how + " }"));
    other->SetTraining(false);
    auto o = other->Step({&lb, &ub, 0});
    ASSERT_TRUE(o.ok()) << o.status();
    EXPECT_NEAR(o->metrics.at("loss_distill_l"), r->metrics.at("loss_distill_l"), 1e-7);
    EXPECT_NEAR(o->metrics.at("loss_distill_u"), r->metrics.at("loss_distill_u"), 1e-7);
  }
  // A missing teacher is a config error naming the field.
  auto bad = CreateTrainer(Config("self_distillation {}"), Context());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("trainer.self_distillation.teacher"), std::string::npos)
      << bad.status();
}

TEST(SemiSupervisedTrainers, ExtraModelsSurviveACheckpointRoundTrip) {
  for (const std::string& text :
       {std::string("mean_teacher {}"), std::string("cmpl {}"), std::string("s4l {}"),
        std::string("tg_fixmatch {}")}) {
    SCOPED_TRACE(text);
    auto t = Make(Config(text), 1);
    // Move the extra state away from its initial value: a few EMA updates
    // after perturbing the student, or random noise on every parameter.
    {
      torch::NoGradGuard no_grad;
      for (auto& p : t->TrainableParameters()) p.add_(torch::randn_like(p));
    }
    for (int64_t step = 0; step < 3; ++step) t->AfterOptimizerStep(step + 5);
    const std::string path = testing::TmpPath("round_trip.pt");
    CheckpointContents saved;
    saved.modules = t->CheckpointModules();
    ASSERT_TRUE(SaveCheckpoint(path, saved).ok());
    auto fresh = Make(Config(text), 2);
    CheckpointContents loaded;
    loaded.modules = fresh->CheckpointModules();
    ASSERT_EQ(loaded.modules.size(), saved.modules.size());
    ASSERT_GE(loaded.modules.size(), 2u);
    ASSERT_TRUE(LoadCheckpoint(path, &loaded).ok());
    for (size_t i = 0; i < saved.modules.size(); ++i) {
      auto a = saved.modules[i].second->named_parameters();
      auto b = loaded.modules[i].second->named_parameters();
      auto ab = saved.modules[i].second->named_buffers();
      auto bb = loaded.modules[i].second->named_buffers();
      ASSERT_EQ(a.size(), b.size());
      bool all_equal = true;
      for (const auto& item : a) all_equal &= torch::equal(item.value(), b[item.key()]);
      for (const auto& item : ab) all_equal &= torch::equal(item.value(), bb[item.key()]);
      EXPECT_TRUE(all_equal) << saved.modules[i].first;
    }
  }
}

TEST(SemiSupervisedTrainers, MethodsWithoutUnlabeledVideosSayWhy) {
  const ClipBatch lb = Batch(2, 1);
  for (const char* text : {"pseudo_label {}", "fixmatch {}", "cmpl {}", "tg_fixmatch {}"}) {
    auto t = Make(Config(text));
    auto r = t->Step({&lb, nullptr, 0});
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("needs unlabeled videos"), std::string::npos) << r.status();
  }
}

}  // namespace
}  // namespace tb
