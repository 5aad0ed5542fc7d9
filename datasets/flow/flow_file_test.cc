// The .flow format: quantisation, the row filter, random access to fields,
// every kind of damage detected with the file named, the folder index and
// how FlowStore finds a video's file; the crop of flow clips.
#include <cmath>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "core/testing/test_util.h"
#include "datasets/augment.h"
#include "datasets/flow/flow_clip.h"
#include "datasets/flow/flow_file.h"
#include "datasets/flow/flow_index.h"

namespace tb {
namespace {

namespace fs = std::filesystem;

FlowQuantization Quantization(float bound, int levels) {
  FlowQuantization q;
  q.set_bound(bound);
  q.set_levels(levels);
  return q;
}

TEST(FlowQuantization, ZeroIsALevelAndErrorsAreAtMostHalfAStep) {
  const FlowQuantization q = Quantization(20, 255);
  EXPECT_NEAR(FlowQuantStep(q), 40.0 / 254, 1e-6);
  EXPECT_EQ(QuantizeFlowValue(0.0f, q), 127);
  EXPECT_EQ(DequantizeFlowValue(127, q), 0.0f);
  EXPECT_EQ(QuantizeFlowValue(-20.0f, q), 0);
  EXPECT_EQ(QuantizeFlowValue(20.0f, q), 254);
  EXPECT_EQ(QuantizeFlowValue(-300.0f, q), 0);
  EXPECT_EQ(QuantizeFlowValue(1e9f, q), 254);
  EXPECT_EQ(QuantizeFlowValue(NAN, q), 127);
  EXPECT_EQ(QuantizeFlowValue(INFINITY, q), 254);
  for (float v = -20; v <= 20; v += 0.013f) {
    EXPECT_LE(std::abs(DequantizeFlowValue(QuantizeFlowValue(v, q), q) - v),
              FlowQuantStep(q) / 2 + 1e-5);
  }
  const FlowQuantization q256 = Quantization(8, 256);
  EXPECT_EQ(QuantizeFlowValue(8.0f, q256), 255);
  EXPECT_NEAR(DequantizeFlowValue(255, q256), 8.0f, 1e-6);
}

TEST(FlowQuantization, FieldsBecomePlanes) {
  const float xy[] = {1, -1, 2, -2, 3, -3};  // 3 pixels, interleaved
  uint8_t planes[6];
  const FlowQuantization q = Quantization(127, 255);  // step 1
  QuantizeFlowField(xy, 3, 1, q, planes);
  EXPECT_EQ(std::vector<int>(planes, planes + 6), (std::vector<int>{128, 129, 130, 126, 125, 124}));
}

FlowSettings Settings(const std::string& filter) {
  FlowSettings s = DefaultFlowSettings();
  s.set_filter(filter);
  return s;
}

TEST(FlowField, EncodeDecodeRoundTripWithEitherFilter) {
  const int w = 37, h = 11;
  std::vector<uint8_t> planes(2 * w * h);
  for (size_t i = 0; i < planes.size(); ++i) planes[i] = static_cast<uint8_t>((i * 7919) % 255);
  for (const std::string filter : {"left_delta", "none"}) {
    absl::StatusOr<std::string> data = EncodeFlowField(planes.data(), w, h, Settings(filter));
    ASSERT_TRUE(data.ok());
    std::vector<uint8_t> back(planes.size());
    ASSERT_TRUE(DecodeFlowField(*data, w, h, Settings(filter), "f", back.data()).ok());
    EXPECT_EQ(back, planes) << filter;
  }
  // A smooth field compresses better with the row filter.
  for (int y = 0; y < 2 * h; ++y) {
    for (int x = 0; x < w; ++x) planes[y * w + x] = static_cast<uint8_t>(100 + x + y);
  }
  EXPECT_LT(EncodeFlowField(planes.data(), w, h, Settings("left_delta"))->size(),
            EncodeFlowField(planes.data(), w, h, Settings("none"))->size());
}

TEST(FlowField, DamagedStreamsAreErrors) {
  const int w = 8, h = 4;
  std::vector<uint8_t> planes(2 * w * h, 127), out(planes.size());
  std::string data = *EncodeFlowField(planes.data(), w, h, DefaultFlowSettings());
  std::string bad = data;
  bad[bad.size() / 2] ^= 0x55;
  EXPECT_EQ(DecodeFlowField(bad, w, h, DefaultFlowSettings(), "F", out.data()).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_FALSE(DecodeFlowField(data.substr(0, data.size() - 3), w, h, DefaultFlowSettings(), "F",
                               out.data()).ok());
  EXPECT_FALSE(DecodeFlowField(data + "xx", w, h, DefaultFlowSettings(), "F", out.data()).ok());
  // The right stream for another size.
  EXPECT_FALSE(DecodeFlowField(data, w, h + 1, DefaultFlowSettings(), "F", out.data()).ok());
  // Levels beyond `levels`.
  std::vector<uint8_t> high(2 * w * h, 255);
  const std::string high_data = *EncodeFlowField(high.data(), w, h, DefaultFlowSettings());
  const absl::Status s = DecodeFlowField(high_data, w, h, DefaultFlowSettings(), "F", out.data());
  EXPECT_NE(s.message().find("level 255 >= 255 levels"), std::string::npos) << s;
}

TEST(FlowSettings, ValidationAndDifferences) {
  EXPECT_TRUE(ValidateFlowSettings(DefaultFlowSettings()).ok());
  FlowSettings s = DefaultFlowSettings();
  s.set_algorithm("farneback");
  EXPECT_FALSE(ValidateFlowSettings(s).ok());
  s = DefaultFlowSettings();
  s.mutable_tvl1()->set_median_filtering(4);
  EXPECT_FALSE(ValidateFlowSettings(s).ok());
  s = DefaultFlowSettings();
  s.set_filter("paeth");
  EXPECT_FALSE(ValidateFlowSettings(s).ok());
  EXPECT_EQ(FlowSettingsDifference(DefaultFlowSettings(), DefaultFlowSettings()), "");
  s = DefaultFlowSettings();
  s.set_decode_short_side(112);
  s.mutable_quantization()->set_levels(256);
  EXPECT_EQ(FlowSettingsDifference(DefaultFlowSettings(), s),
            "decode_short_side 128 vs 112, levels 255 vs 256");
}

class FlowFileTest : public ::testing::Test {
 protected:
  static constexpr int kW = 20, kH = 10, kFrames = 6;

  void SetUp() override {
    path_ = ::tb::testing::TmpPath("flow_file_test/sub/v.avi.flow");
    fs::remove_all(::tb::testing::TmpPath("flow_file_test"));
    header_.set_version(kFlowFileVersion);
    *header_.mutable_settings() = DefaultFlowSettings();
    header_.set_relative_path("sub/v.avi");
    header_.set_frame_count(kFrames);
    header_.set_width(kW);
    header_.set_height(kH);
    for (int f = 0; f < kFrames - 1; ++f) fields_.push_back(*EncodeFlowField(Levels(f).data(), kW, kH, header_.settings()));
    ASSERT_TRUE(WriteFlowFile(path_, header_, fields_).ok());
  }

  // Field f: x level 10 f + x, y level 200 - y.
  static std::vector<uint8_t> Levels(int f) {
    std::vector<uint8_t> p(2 * kW * kH);
    for (int y = 0; y < kH; ++y) {
      for (int x = 0; x < kW; ++x) {
        p[y * kW + x] = static_cast<uint8_t>(10 * f + x);
        p[kW * kH + y * kW + x] = static_cast<uint8_t>(200 - y);
      }
    }
    return p;
  }

  std::string Error() {
    absl::StatusOr<std::unique_ptr<FlowFile>> f = FlowFile::Open(path_);
    if (!f.ok()) return std::string(f.status().message());
    std::vector<uint8_t> p(2 * kW * kH);
    for (int i = 0; i < (*f)->num_fields(); ++i) {
      absl::Status s = (*f)->ReadField(i, p.data());
      if (!s.ok()) return std::string(s.message());
    }
    return "";
  }

  void Patch(size_t offset, char value) {
    std::fstream io(path_, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(static_cast<std::streamoff>(offset));
    io.put(value);
  }

  std::string path_;
  FlowFileHeader header_;
  std::vector<std::string> fields_;
};

TEST_F(FlowFileTest, FieldsReadBackInAnyOrder) {
  absl::StatusOr<std::unique_ptr<FlowFile>> f = FlowFile::Open(path_);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->num_fields(), kFrames - 1);
  EXPECT_EQ((*f)->header().relative_path(), "sub/v.avi");
  EXPECT_EQ((*f)->file_bytes(), static_cast<int64_t>(fs::file_size(path_)));
  EXPECT_FALSE(fs::exists(path_ + ".partial"));
  std::vector<uint8_t> p(2 * kW * kH);
  for (int f_index : {4, 0, 2, 2, 1, 3}) {
    ASSERT_TRUE((*f)->ReadField(f_index, p.data()).ok());
    EXPECT_EQ(p, Levels(f_index));
  }
  std::vector<float> xy(2 * kW * kH);
  ASSERT_TRUE((*f)->ReadFieldFloat(3, xy.data()).ok());
  const FlowQuantization& q = header_.settings().quantization();
  EXPECT_FLOAT_EQ(xy[5], DequantizeFlowValue(35, q));
  EXPECT_FLOAT_EQ(xy[kW * kH + 2 * kW], DequantizeFlowValue(198, q));
  EXPECT_EQ((*f)->ReadField(5, p.data()).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ((*f)->ReadField(-1, p.data()).code(), absl::StatusCode::kOutOfRange);
}

TEST_F(FlowFileTest, EveryDamageIsAnErrorNamingTheFile) {
  const std::string good = ::tb::testing::ReadAll(path_);
  auto restore = [&] {
    std::ofstream(path_, std::ios::binary | std::ios::trunc) << good;
  };
  EXPECT_EQ(Error(), "");
  Patch(0, 'X');
  EXPECT_EQ(Error(), "flow file " + path_ + " is corrupt: not a flow file (wrong magic bytes)");
  restore();
  Patch(20, static_cast<char>(good[20] ^ 1));  // inside the header
  EXPECT_NE(Error().find("flow file " + path_ + " is corrupt"), std::string::npos) << Error();
  restore();
  Patch(good.size() - 1, static_cast<char>(good.back() ^ 0x40));  // inside the last field
  EXPECT_NE(Error().find("flow file " + path_ + " is corrupt: field 4"), std::string::npos)
      << Error();
  restore();
  fs::resize_file(path_, good.size() - 5);
  EXPECT_NE(Error().find("is corrupt: truncated or extended"), std::string::npos) << Error();
  fs::resize_file(path_, 7);
  EXPECT_NE(Error().find("is corrupt: only 7 bytes"), std::string::npos) << Error();
  restore();
  std::ofstream(path_, std::ios::binary | std::ios::app) << "extra";
  EXPECT_NE(Error().find("truncated or extended"), std::string::npos) << Error();
  fs::remove(path_);
  EXPECT_EQ(FlowFile::Open(path_).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Error(), "flow file not found: " + path_);
}

TEST_F(FlowFileTest, WriterRefusesAFrameCountThatDoesNotMatch) {
  header_.set_frame_count(3);
  EXPECT_FALSE(WriteFlowFile(path_ + "2", header_, fields_).ok());
}

TEST(FlowIndex, RoundTripAndTheStoreFindsVideosUnderAnyRoot) {
  const std::string dir = ::tb::testing::TmpPath("flow_index_test");
  fs::remove_all(dir);
  FlowIndex index;
  *index.mutable_settings() = DefaultFlowSettings();
  for (const std::string p : {"Archery/v_Archery_g01_c01.avi", "c01.avi", "b/Archery/x.avi"}) {
    FlowIndexEntry* e = index.add_video();
    e->set_relative_path(p);
    e->set_flow_path(FlowRelativePath(p));
  }
  ASSERT_TRUE(WriteFlowIndex(dir + "/" + kFlowIndexName, index).ok());
  absl::StatusOr<std::shared_ptr<const FlowStore>> store = FlowStore::Open(dir);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->index().video_size(), 3);
  EXPECT_EQ(*(*store)->FlowPathFor("/data/ucf/Archery/v_Archery_g01_c01.avi"),
            dir + "/Archery/v_Archery_g01_c01.avi.flow");
  EXPECT_EQ(*(*store)->FlowPathFor("/elsewhere/Archery/v_Archery_g01_c01.avi"),
            dir + "/Archery/v_Archery_g01_c01.avi.flow");
  EXPECT_EQ(*(*store)->FlowPathFor("c01.avi"), dir + "/c01.avi.flow");
  // Whole path components only: "xc01.avi" is not "c01.avi".
  const absl::Status missing = (*store)->FlowPathFor("/data/xc01.avi").status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.message().find("no flow for video /data/xc01.avi: not listed in " + dir +
                                   "/flow_index.pbtxt"),
            std::string::npos)
      << missing;
  // The longest listed suffix wins.
  EXPECT_EQ(*(*store)->FlowPathFor("/r/b/Archery/x.avi"), dir + "/b/Archery/x.avi.flow");

  EXPECT_EQ(FlowStore::Open(dir + "/none").status().code(), absl::StatusCode::kNotFound);
  fs::create_directories(dir + "/bad");
  std::ofstream(dir + "/bad/" + std::string(kFlowIndexName)) << "settings { nonsense: 1 }\n";
  const absl::Status bad = FlowStore::Open(dir + "/bad").status();
  EXPECT_NE(bad.message().find(dir + "/bad/flow_index.pbtxt:1:"), std::string::npos) << bad;
}

TEST(FlowClip, TheLastFrameRepeatsTheFieldBeforeIt) {
  EXPECT_EQ(FlowFieldOfFrame(0, 10), 0);
  EXPECT_EQ(FlowFieldOfFrame(8, 10), 8);
  EXPECT_EQ(FlowFieldOfFrame(9, 10), 8);
  EXPECT_EQ(FlowFieldOfFrame(1, 2), 0);
}

// With the flow at the frames' size the crop samples exactly where
// CropResizeNormalize samples the RGB frame, and a flip mirrors the field
// and negates its x component.
TEST(FlowClip, SameCropAsTheRgbClipAndFlipNegatesX) {
  const int w = 30, h = 20, s = 12;
  // RGB frame and flow field both encode the source x (R, flow x) and y
  // (G, flow y).
  std::vector<uint8_t> rgb(h * w * 3);
  std::vector<float> field(2 * h * w);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      rgb[(y * w + x) * 3] = static_cast<uint8_t>(x);
      rgb[(y * w + x) * 3 + 1] = static_cast<uint8_t>(y);
      field[y * w + x] = static_cast<float>(x);
      field[h * w + y * w + x] = static_cast<float>(y);
    }
  }
  for (bool flip : {false, true}) {
    CropBox box;
    box.y0 = 3;
    box.x0 = 5;
    box.height = 14;
    box.width = 19;
    box.flip = flip;
    std::vector<float> out_rgb(3 * s * s), out_flow(2 * 2 * s * s);
    CropResizeNormalize(rgb.data(), 1, h, w, box, s, {0, 0, 0}, {1 / 255.0f, 1, 1},
                        out_rgb.data());
    CropResizeFlowClip({field.data(), field.data()}, h, w, MapCropBoxToField(box, h, w, h, w), s,
                       0.5f, out_flow.data());
    for (int t = 0; t < 2; ++t) {
      for (int i = 0; i < s * s; ++i) {
        const float x = out_rgb[i], y = out_rgb[s * s + i] * 255;
        EXPECT_NEAR(out_flow[t * s * s + i], (flip ? -0.5f : 0.5f) * x, 1e-4);
        EXPECT_NEAR(out_flow[2 * s * s + t * s * s + i], 0.5f * y, 1e-4);
      }
    }
    // Mirrored: x decreases along the row.
    EXPECT_EQ(out_rgb[s - 1] < out_rgb[0], flip);
  }
  // A field at half the size is cropped at the same place of the picture.
  const FlowCropBox half = MapCropBoxToField(CropBox{4, 6, 10, 12, true}, 20, 30, 10, 15);
  EXPECT_DOUBLE_EQ(half.y0, 2);
  EXPECT_DOUBLE_EQ(half.x0, 3);
  EXPECT_DOUBLE_EQ(half.height, 5);
  EXPECT_DOUBLE_EQ(half.width, 6);
  EXPECT_TRUE(half.flip);
}

}  // namespace
}  // namespace tb
