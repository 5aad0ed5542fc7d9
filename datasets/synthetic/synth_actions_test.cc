#include "datasets/synthetic/synth_actions.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

#include "core/testing/test_util.h"

namespace tb {
namespace {

namespace fs = std::filesystem;

std::string TmpDir(const std::string& name) { return ::tb::testing::TmpPath(name); }
using ::tb::testing::ReadAll;
using ::tb::testing::RunCommand;

std::vector<std::string> Lines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

SynthOptions SmallOptions() {
  SynthOptions o;
  o.num_classes = 4;
  o.train_per_class = 2;
  o.test_per_class = 1;
  o.seed = 7;
  o.min_frames = 40;
  o.max_frames = 48;
  o.min_short_side = 64;
  o.max_short_side = 72;
  return o;
}

// Every regular file under `dir`, relative path -> bytes.
std::vector<std::pair<std::string, std::string>> Tree(const std::string& dir) {
  std::vector<std::pair<std::string, std::string>> files;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    files.emplace_back(fs::relative(entry.path(), dir).string(), ReadAll(entry.path().string()));
  }
  std::sort(files.begin(), files.end());
  return files;
}

TEST(SynthActions, WritesTheUcf101Layout) {
  const SynthOptions options = SmallOptions();
  const std::string dir = TmpDir("layout");
  SynthWriteStats stats;
  const absl::Status status = WriteSynthActions(dir, options, 2, &stats);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(stats.videos, 12);

  auto classes = SynthClasses(options);
  ASSERT_TRUE(classes.ok());
  const std::vector<std::string> class_ind = Lines(dir + "/classInd.txt");
  ASSERT_EQ(class_ind.size(), 4u);
  std::vector<std::string> names;
  for (size_t i = 0; i < class_ind.size(); ++i) {
    std::istringstream line(class_ind[i]);
    int label;
    std::string name;
    ASSERT_TRUE(line >> label >> name) << class_ind[i];
    EXPECT_EQ(label, static_cast<int>(i) + 1);
    EXPECT_EQ(name, (*classes)[i].name);
    names.push_back(name);
  }

  const std::vector<std::string> train = Lines(dir + "/trainlist01.txt");
  const std::vector<std::string> test = Lines(dir + "/testlist01.txt");
  ASSERT_EQ(train.size(), 8u);
  ASSERT_EQ(test.size(), 4u);
  std::set<std::string> listed;
  int64_t frames = 0;
  auto check_video = [&](const std::string& rel, int label) {
    EXPECT_TRUE(listed.insert(rel).second) << "listed twice: " << rel;
    const std::string& name = names[label - 1];
    EXPECT_EQ(rel.rfind(name + "/v_" + name + "_g", 0), 0u) << rel;
    EXPECT_EQ(rel.substr(rel.size() - 8), "_c01.avi") << rel;
    const std::string path = dir + "/" + rel;
    ASSERT_TRUE(fs::exists(path)) << path;
    const std::string probe = RunCommand(
        "/usr/bin/ffprobe -v error -count_frames -select_streams v:0 -show_entries "
        "stream=codec_name,nb_read_frames,width,height -of default=noprint_wrappers=1 '" +
        path + "'");
    EXPECT_NE(probe.find("codec_name=mpeg4"), std::string::npos) << probe;
    const size_t at = probe.find("nb_read_frames=");
    ASSERT_NE(at, std::string::npos) << probe;
    const int n = std::atoi(probe.c_str() + at + 15);
    EXPECT_GE(n, options.min_frames) << rel;
    EXPECT_LE(n, options.max_frames) << rel;
    frames += n;
    const int height = std::atoi(probe.c_str() + probe.find("height=") + 7);
    const int width = std::atoi(probe.c_str() + probe.find("width=") + 6);
    EXPECT_GE(height, options.min_short_side);
    EXPECT_LE(height, options.max_short_side);
    EXPECT_NEAR(width, height * 4.0 / 3.0, 2.0);
  };
  std::vector<int> train_per_label(5, 0);
  for (const std::string& line : train) {
    std::istringstream in(line);
    std::string rel;
    int label = 0;
    ASSERT_TRUE(in >> rel >> label) << line;
    ASSERT_GE(label, 1);
    ASSERT_LE(label, 4);
    ++train_per_label[label];
    check_video(rel, label);
  }
  for (int label = 1; label <= 4; ++label) EXPECT_EQ(train_per_label[label], 2);
  for (const std::string& rel : test) {
    EXPECT_EQ(rel.find(' '), std::string::npos) << "test list has paths only: " << rel;
    const std::string name = rel.substr(0, rel.find('/'));
    const int label =
        static_cast<int>(std::find(names.begin(), names.end(), name) - names.begin()) + 1;
    ASSERT_LE(label, 4) << rel;
    check_video(rel, label);
  }
  EXPECT_EQ(frames, stats.frames);

  // Nothing but the listed videos, their actor box files and the four text
  // files, no leftovers.
  int num_files = 0, num_actor_files = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    num_files += entry.is_regular_file();
    num_actor_files += entry.path().extension() == ".actors";
  }
  EXPECT_EQ(num_files, 12 + 12 + 4);
  EXPECT_EQ(num_actor_files, 12);

  const std::string info = ReadAll(dir + "/synth_actions.txt");
  EXPECT_NE(info.find("seed=7"), std::string::npos);
  EXPECT_NE(info.find("noise="), std::string::npos);
  EXPECT_NE(info.find("1 " + names[0] + " cyclic "), std::string::npos) << info;
  EXPECT_NE(info.find("2 " + names[1] + " sequential "), std::string::npos) << info;
}

TEST(SynthActions, SameSeedSameBytesForAnyThreadCount) {
  const SynthOptions options = SmallOptions();
  ASSERT_TRUE(WriteSynthActions(TmpDir("one_thread"), options, 1).ok());
  ASSERT_TRUE(WriteSynthActions(TmpDir("two_threads"), options, 2).ok());
  const auto a = Tree(TmpDir("one_thread"));
  const auto b = Tree(TmpDir("two_threads"));
  ASSERT_EQ(a.size(), 28u);  // 12 videos, their 12 .actors files, 4 text files
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(a[i].second == b[i].second) << a[i].first;
  }

  SynthOptions other = options;
  other.seed = 8;
  ASSERT_TRUE(WriteSynthActions(TmpDir("other_seed"), other, 2).ok());
  const auto c = Tree(TmpDir("other_seed"));
  ASSERT_EQ(c.size(), a.size());
  int differing_videos = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].first, c[i].first);  // same layout and names
    if (a[i].first.size() > 4 && a[i].first.substr(a[i].first.size() - 4) == ".avi") {
      differing_videos += a[i].second != c[i].second;
    }
  }
  EXPECT_EQ(differing_videos, 12);
}

TEST(SynthActions, RejectsBadOptions) {
  SynthOptions odd = SmallOptions();
  odd.num_classes = 5;
  const absl::Status status = WriteSynthActions(TmpDir("odd"), odd, 1);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message().rfind("num_classes:", 0), 0u) << status;
  EXPECT_FALSE(fs::exists(TmpDir("odd")));

  SynthOptions zero = SmallOptions();
  zero.num_classes = 0;
  EXPECT_EQ(ValidateSynthOptions(zero).code(), absl::StatusCode::kInvalidArgument);
  SynthOptions too_many = SmallOptions();
  too_many.num_classes = 74;
  EXPECT_EQ(ValidateSynthOptions(too_many).code(), absl::StatusCode::kInvalidArgument);
  SynthOptions frames = SmallOptions();
  frames.max_frames = frames.min_frames - 1;
  EXPECT_EQ(ValidateSynthOptions(frames).message().rfind("max_frames:", 0), 0u);
  SynthOptions noise = SmallOptions();
  noise.noise = -1;
  EXPECT_EQ(ValidateSynthOptions(noise).message().rfind("noise:", 0), 0u);

  EXPECT_EQ(RenderVideo(4, 0, SmallOptions()).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(RenderVideo(0, 3, SmallOptions()).status().code(), absl::StatusCode::kOutOfRange);
}

TEST(SynthActions, UnwritableOutputIsAnIoError) {
  const std::string file = TmpDir("a_file");
  std::ofstream(file) << "x";
  const absl::Status status = WriteSynthActions(file + "/sub", SmallOptions(), 1);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find(file), std::string::npos) << status;
}

TEST(SynthActions, ClassListIsBalancedAndUnique) {
  SynthOptions options = SmallOptions();
  options.num_classes = 72;
  auto classes = SynthClasses(options);
  ASSERT_TRUE(classes.ok()) << classes.status();
  std::set<std::string> names;
  std::vector<std::set<std::string>> words_per_group(6);
  for (size_t i = 0; i < classes->size(); ++i) {
    const SynthClass& c = (*classes)[i];
    EXPECT_TRUE(names.insert(c.name).second) << c.name;
    EXPECT_EQ(c.family, i % 2 == 0 ? SynthFamily::kCyclic : SynthFamily::kSequential);
    if (c.family == SynthFamily::kSequential) {
      // Classes of a group use the same sub-actions: sorted letters agree.
      std::string letters = c.name;
      std::sort(letters.begin(), letters.end());
      words_per_group[(i / 2) / 6].insert(letters);
    }
  }
  for (const auto& group : words_per_group) EXPECT_EQ(group.size(), 1u);
}

// Mean absolute difference between two frames.
double FrameDistance(const SynthVideo& v, int a, int b) {
  const size_t n = static_cast<size_t>(v.width) * v.height * 3;
  const uint8_t* pa = v.frame(a);
  const uint8_t* pb = v.frame(b);
  int64_t sum = 0;
  for (size_t i = 0; i < n; ++i) sum += std::abs(pa[i] - pb[i]);
  return static_cast<double>(sum) / n;
}

// How new the second half of a video is: for each frame of the second half,
// the distance to the most similar frame of the first half, averaged. A
// periodic video revisits its states (small), a sequence of sub-actions
// reaches states it never had before (large).
double Novelty(const SynthVideo& v) {
  const int half = v.num_frames / 2;
  double total = 0;
  for (int t = half; t < v.num_frames; ++t) {
    double best = 1e9;
    for (int s = 0; s < half; ++s) best = std::min(best, FrameDistance(v, t, s));
    total += best;
  }
  return total / (v.num_frames - half);
}

TEST(SynthActions, CyclicVideosRepeatThemselvesSequentialOnesDoNot) {
  SynthOptions options;
  options.num_classes = 12;  // every cyclic motion and six orders
  options.train_per_class = 3;
  options.test_per_class = 0;
  options.min_frames = options.max_frames = 96;
  options.min_short_side = options.max_short_side = 64;
  options.noise = 0;
  options.jitter = 0;
  options.max_distractors = 0;
  double cyclic_sum = 0, sequential_sum = 0, cyclic_max = 0, sequential_min = 1e9;
  int cyclic_n = 0, sequential_n = 0;
  for (int c = 0; c < options.num_classes; ++c) {
    for (int k = 0; k < options.train_per_class; ++k) {
      auto video = RenderVideo(c, k, options);
      ASSERT_TRUE(video.ok()) << video.status();
      const double novelty = Novelty(*video);
      if (c % 2 == 0) {
        cyclic_sum += novelty;
        cyclic_max = std::max(cyclic_max, novelty);
        ++cyclic_n;
      } else {
        sequential_sum += novelty;
        sequential_min = std::min(sequential_min, novelty);
        ++sequential_n;
      }
    }
  }
  const double cyclic_mean = cyclic_sum / cyclic_n;
  const double sequential_mean = sequential_sum / sequential_n;
  std::printf("novelty: cyclic mean %.3f max %.3f, sequential mean %.3f min %.3f\n",
              cyclic_mean, cyclic_max, sequential_mean, sequential_min);
  EXPECT_LT(cyclic_mean * 4, sequential_mean);
  EXPECT_LT(cyclic_max, sequential_min);
}

TEST(SynthActions, NoiseKnobChangesOnlyTheNoise) {
  SynthOptions clean = SmallOptions();
  clean.noise = 0;
  SynthOptions noisy = clean;
  noisy.noise = 6;
  for (int c = 0; c < clean.num_classes; ++c) {
    auto a = RenderVideo(c, 0, clean);
    auto b = RenderVideo(c, 0, noisy);
    ASSERT_TRUE(a.ok() && b.ok());
    ASSERT_EQ(a->rgb.size(), b->rgb.size());
    double sum = 0;
    for (size_t i = 0; i < a->rgb.size(); ++i) sum += std::abs(a->rgb[i] - b->rgb[i]);
    // E|X| of the triangular noise is sigma * sqrt(6) / 3 (less where clipped).
    EXPECT_NEAR(sum / a->rgb.size(), 6 * 0.8165, 0.5) << "class " << c;
  }
}

// Share of pixels of frame 0 that are byte-identical in two videos.
double SharedPixels(const SynthVideo& a, const SynthVideo& b) {
  EXPECT_TRUE(a.width == b.width && a.height == b.height);
  const size_t pixels = static_cast<size_t>(a.width) * a.height;
  size_t same = 0;
  for (size_t i = 0; i < pixels; ++i) {
    same += std::equal(a.rgb.begin() + 3 * i, a.rgb.begin() + 3 * i + 3, b.rgb.begin() + 3 * i);
  }
  return static_cast<double>(same) / pixels;
}

TEST(SynthActions, BackgroundPoolSharesBackgroundsAcrossClassesAndVideos) {
  // No noise, shake or distractors: what is not the main object is background.
  SynthOptions own = SmallOptions();
  own.noise = 0;
  own.jitter = 0;
  own.max_distractors = 0;
  own.min_short_side = own.max_short_side = 64;
  own.background_pool = 0;
  SynthOptions pooled = own;
  pooled.background_pool = 1;

  auto own_a = RenderVideo(0, 0, own), own_b = RenderVideo(1, 1, own);
  auto pool_a = RenderVideo(0, 0, pooled), pool_b = RenderVideo(1, 1, pooled);
  ASSERT_TRUE(own_a.ok() && own_b.ok() && pool_a.ok() && pool_b.ok());
  // With one pooled background, two videos of different classes differ only
  // where their objects are (each covers well under a quarter of the frame).
  EXPECT_GT(SharedPixels(*pool_a, *pool_b), 0.75);
  // With their own backgrounds they share almost nothing.
  EXPECT_LT(SharedPixels(*own_a, *own_b), 0.1);

  // The pool changes the background only: the object is drawn in the same
  // place, so where the pooled and own renderings of one video differ is
  // background, and where they agree includes the object.
  EXPECT_LT(SharedPixels(*own_a, *pool_a), 0.25);

  // Larger pools: every video takes one of N backgrounds; with 2 of them, of
  // 4 classes x 3 videos some pair of different classes shares one.
  SynthOptions two = own;
  two.background_pool = 2;
  std::vector<SynthVideo> videos;
  for (int c = 0; c < two.num_classes; ++c) {
    for (int k = 0; k < 3; ++k) {
      auto v = RenderVideo(c, k, two);
      ASSERT_TRUE(v.ok());
      videos.push_back(*std::move(v));
    }
  }
  int sharing_pairs = 0;
  for (size_t i = 0; i < videos.size(); ++i) {
    for (size_t j = i + 1; j < videos.size(); ++j) {
      sharing_pairs += SharedPixels(videos[i], videos[j]) > 0.75;
    }
  }
  // 12 videos over 2 backgrounds: at least 2 * C(6, 2) = 30 of the 66 pairs
  // share a background, and not all do unless the choice is degenerate.
  EXPECT_GE(sharing_pairs, 30);
  EXPECT_LT(sharing_pairs, 66);

  SynthOptions bad = own;
  bad.background_pool = -1;
  EXPECT_EQ(ValidateSynthOptions(bad).message().rfind("background_pool:", 0), 0u);
}

TEST(SynthActions, CheckSynthActionsDirTellsMissingUpToDateAndStale) {
  SynthOptions options = SmallOptions();
  options.num_classes = 2;
  options.train_per_class = 1;
  options.test_per_class = 1;
  const std::string dir = TmpDir("check_dir");
  std::string difference;
  auto state = CheckSynthActionsDir(dir, options, &difference);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(*state, SynthDirState::kMissing);

  ASSERT_TRUE(WriteSynthActions(dir, options, 1).ok());
  state = CheckSynthActionsDir(dir, options, &difference);
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(*state, SynthDirState::kUpToDate);

  SynthOptions other = options;
  other.background_pool = 3;
  state = CheckSynthActionsDir(dir, other, &difference);
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(*state, SynthDirState::kStale);
  EXPECT_EQ(difference, "background_pool: the folder has 8, these options give 3");

  // A dataset written before the generator version existed.
  std::string text = ReadAll(dir + "/synth_actions.txt");
  const std::string version_line = absl::StrCat("generator_version=", kSynthGeneratorVersion, "\n");
  ASSERT_NE(text.find(version_line), std::string::npos);
  text.erase(text.find(version_line), version_line.size());
  std::ofstream(dir + "/synth_actions.txt", std::ios::trunc) << text;
  state = CheckSynthActionsDir(dir, options, &difference);
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(*state, SynthDirState::kStale);
  EXPECT_EQ(difference, absl::StrCat("generator_version: the folder has (absent), these options give ",
                                     kSynthGeneratorVersion));
}

TEST(SynthActions, EncodedVideoMatchesTheRenderedFrames) {
  SynthOptions options = SmallOptions();
  options.noise = 0;
  const std::string dir = TmpDir("decode");
  ASSERT_TRUE(WriteSynthActions(dir, options, 2).ok());
  auto classes = SynthClasses(options);
  ASSERT_TRUE(classes.ok());
  for (int c : {0, 1}) {
    auto video = RenderVideo(c, 0, options);
    ASSERT_TRUE(video.ok());
    const std::string& name = (*classes)[c].name;
    const std::string path = dir + "/" + name + "/v_" + name + "_g01_c01.avi";
    const std::string decoded = RunCommand("/usr/bin/ffmpeg -nostdin -v error -i '" + path +
                                           "' -f rawvideo -pix_fmt rgb24 -");
    ASSERT_EQ(decoded.size(), video->rgb.size());
    double sum = 0;
    for (size_t i = 0; i < decoded.size(); ++i) {
      sum += std::abs(static_cast<uint8_t>(decoded[i]) - video->rgb[i]);
    }
    EXPECT_LT(sum / decoded.size(), 6.0) << path;
  }
}

}  // namespace
}  // namespace tb
