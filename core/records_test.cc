#include "core/records.h"

#include <gtest/gtest.h>

#include <fstream>

#include "core/results.pb.h"
#include "core/testing/test_util.h"

namespace tb {
namespace {

TEST(Records, TextRoundTripAndErrorsNameTheFile) {
  StageRecord record;
  record.set_stage("score");
  record.set_fingerprint("ab\"c");
  record.set_seconds(1.5);
  const std::string path = testing::TmpPath("stage_done.pbtxt");
  ASSERT_TRUE(WriteTextRecord(path, record).ok());
  auto back = ReadTextRecord<StageRecord>(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->fingerprint(), "ab\"c");
  EXPECT_EQ(back->seconds(), 1.5);

  EXPECT_EQ(ReadTextRecord<StageRecord>(testing::TmpPath("absent.pbtxt")).status().code(),
            absl::StatusCode::kNotFound);
  const std::string bad = testing::TmpPath("bad.pbtxt");
  std::ofstream(bad) << "stage: \"x\"\nseconds: oops\n";
  const absl::Status parse = ReadTextRecord<StageRecord>(bad).status();
  EXPECT_EQ(parse.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(parse.message().find(bad + ":2:"), std::string::npos) << parse.message();
}

TEST(Records, JsonUsesProtoFieldNamesAndEscapes) {
  ExperimentResults results;
  results.set_experiment("a \"quoted\" name\\");
  results.set_labeled_videos(30);
  ClassResult* c = results.mutable_test()->add_per_class();
  c->set_class_name("jump\trope");
  c->set_top1(0.25);
  const std::string json = ToJson(results);
  EXPECT_NE(json.find("\"labeled_videos\": 30"), std::string::npos) << json;
  EXPECT_NE(json.find("\"class_name\": \"jump\\trope\""), std::string::npos) << json;
  EXPECT_NE(json.find("a \\\"quoted\\\" name\\\\"), std::string::npos) << json;
  ExperimentResults back;
  ASSERT_TRUE(ParseJson(json, "test", &back).ok());
  EXPECT_EQ(back.experiment(), results.experiment());
  EXPECT_EQ(back.test().per_class(0).class_name(), "jump\trope");

  const std::string path = testing::TmpPath("results.json");
  ASSERT_TRUE(WriteJsonRecord(path, results).ok());
  ExperimentResults read;
  ASSERT_TRUE(ReadJsonRecord(path, &read).ok());
  EXPECT_EQ(read.labeled_videos(), 30);
}

TEST(Records, OneLineText) {
  VideoWeight w;
  w.set_video("a.avi");
  w.set_weight(0.5);
  EXPECT_EQ(ToOneLineTextProto(w), "video: \"a.avi\" weight: 0.5");
}

}  // namespace
}  // namespace tb
