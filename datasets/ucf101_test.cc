#include "datasets/ucf101.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace tb {
namespace {

namespace fs = std::filesystem;

class Ucf101Test : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    root_ = std::string(tmp != nullptr ? tmp : "/tmp") + "/ucf101_" + name;
    fs::remove_all(root_);
    fs::create_directories(root_ + "/ApplyEyeMakeup");
    fs::create_directories(root_ + "/Archery");
    fs::create_directories(root_ + "/HandstandPushups");
    // CRLF endings and trailing blank lines, as in the official files.
    Write("classInd.txt", "1 ApplyEyeMakeup\r\n2 Archery\r\n3 HandstandPushups\r\n\r\n\r\n");
    Write("trainlist01.txt",
          "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n"
          "Archery/v_Archery_g08_c01.avi 2\r\n"
          "HandstandPushups/v_HandStandPushups_g08_c01.avi 3\r\n\r\n");
    Write("testlist01.txt",
          "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\n"
          "Archery/v_Archery_g01_c01.avi\r\n\r\n");
  }

  void Write(const std::string& relative, const std::string& text) {
    std::ofstream(root_ + "/" + relative, std::ios::binary) << text;
  }

  // Creates every video the split-1 lists name.
  void TouchVideos() {
    for (const char* v :
         {"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "Archery/v_Archery_g08_c01.avi",
          "HandstandPushups/v_HandStandPushups_g08_c01.avi",
          "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", "Archery/v_Archery_g01_c01.avi"}) {
      Write(v, "RIFF");
    }
  }

  // The error of reading split 1, which must name every one of `parts`.
  void ExpectError(absl::StatusCode code, const std::vector<std::string>& parts,
                   bool check_files = false) {
    auto split = ReadUcf101Split(root_, "", 1, check_files);
    ASSERT_FALSE(split.ok());
    EXPECT_EQ(split.status().code(), code) << split.status();
    for (const std::string& p : parts) {
      EXPECT_NE(split.status().message().find(p), std::string::npos)
          << "'" << p << "' not in: " << split.status();
    }
  }

  std::string root_;
};

TEST_F(Ucf101Test, ReadsOfficialFormat) {
  auto split = ReadUcf101Split(root_, "", 1, false);
  ASSERT_TRUE(split.ok()) << split.status();
  EXPECT_EQ(split->class_names,
            (std::vector<std::string>{"ApplyEyeMakeup", "Archery", "HandstandPushups"}));
  ASSERT_EQ(split->train.size(), 3u);
  ASSERT_EQ(split->test.size(), 2u);
  EXPECT_EQ(split->train[1].label, 1);
  EXPECT_EQ(split->train[1].relative_path, "Archery/v_Archery_g08_c01.avi");
  EXPECT_EQ(split->train[1].path, root_ + "/Archery/v_Archery_g08_c01.avi");
  EXPECT_EQ(split->train[2].label, 2);
  EXPECT_EQ(split->test[0].label, 0);
  EXPECT_EQ(split->test[1].label, 1);
  EXPECT_EQ(split->test[1].path, root_ + "/Archery/v_Archery_g01_c01.avi");
}

TEST_F(Ucf101Test, SeparateAnnotationsFolderAndOtherSplit) {
  const std::string ann = root_ + "/lists";
  fs::create_directories(ann);
  fs::rename(root_ + "/classInd.txt", ann + "/classInd.txt");
  std::ofstream(ann + "/trainlist02.txt") << "Archery/v_Archery_g01_c01.avi 2\n";
  std::ofstream(ann + "/testlist02.txt") << "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi\n";
  auto split = ReadUcf101Split(root_ + "/", ann, 2, false);
  ASSERT_TRUE(split.ok()) << split.status();
  ASSERT_EQ(split->train.size(), 1u);
  EXPECT_EQ(split->train[0].path, root_ + "/Archery/v_Archery_g01_c01.avi");
  EXPECT_EQ(split->test[0].label, 0);
}

TEST_F(Ucf101Test, CheckFilesAcceptsExistingVideos) {
  TouchVideos();
  auto split = ReadUcf101Split(root_, "", 1, true);
  EXPECT_TRUE(split.ok()) << split.status();
}

TEST_F(Ucf101Test, CheckFilesNamesMissingVideo) {
  TouchVideos();
  fs::remove(root_ + "/Archery/v_Archery_g01_c01.avi");
  ExpectError(absl::StatusCode::kNotFound,
              {"testlist01.txt:2", root_ + "/Archery/v_Archery_g01_c01.avi"}, true);
}

TEST_F(Ucf101Test, MissingRoot) {
  const std::string missing = root_ + "/nope";
  auto split = ReadUcf101Split(missing, "", 1, false);
  ASSERT_FALSE(split.ok());
  EXPECT_EQ(split.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(split.status().message().find("dataset root not found: " + missing),
            std::string::npos)
      << split.status();
}

TEST_F(Ucf101Test, MissingClassIndex) {
  fs::remove(root_ + "/classInd.txt");
  ExpectError(absl::StatusCode::kNotFound, {"classInd.txt", root_});
}

TEST_F(Ucf101Test, MissingList) {
  fs::remove(root_ + "/testlist01.txt");
  ExpectError(absl::StatusCode::kNotFound, {"testlist01.txt"});
}

TEST_F(Ucf101Test, DuplicateClassId) {
  Write("classInd.txt", "1 ApplyEyeMakeup\n2 Archery\n2 HandstandPushups\n");
  ExpectError(absl::StatusCode::kInvalidArgument,
              {"classInd.txt:3", "duplicate class id 2", "2 HandstandPushups"});
}

TEST_F(Ucf101Test, MalformedClassLine) {
  Write("classInd.txt", "1 ApplyEyeMakeup\nArchery\n");
  ExpectError(absl::StatusCode::kInvalidArgument, {"classInd.txt:2", "'Archery'"});
}

TEST_F(Ucf101Test, UnknownClass) {
  Write("trainlist01.txt", "ApplyEyeMakeup/a.avi 1\nBowling/v_Bowling_g01_c01.avi 2\n");
  ExpectError(absl::StatusCode::kInvalidArgument,
              {"trainlist01.txt:2", "unknown class 'Bowling'", "Bowling/v_Bowling_g01_c01.avi 2"});
}

TEST_F(Ucf101Test, LabelOutOfRange) {
  Write("trainlist01.txt", "Archery/v_Archery_g08_c01.avi 4\n");
  ExpectError(absl::StatusCode::kInvalidArgument,
              {"trainlist01.txt:1", "label 4 out of range", "Archery/v_Archery_g08_c01.avi 4"});
}

TEST_F(Ucf101Test, LabelDisagreesWithFolder) {
  Write("trainlist01.txt", "\nArchery/v_Archery_g08_c01.avi 1\n");
  ExpectError(absl::StatusCode::kInvalidArgument,
              {"trainlist01.txt:2", "disagrees with folder 'Archery'",
               "Archery/v_Archery_g08_c01.avi 1"});
}

TEST_F(Ucf101Test, MalformedTrainLine) {
  Write("trainlist01.txt", "Archery/v_Archery_g08_c01.avi\n");
  ExpectError(absl::StatusCode::kInvalidArgument,
              {"trainlist01.txt:1", "Archery/v_Archery_g08_c01.avi"});
  Write("trainlist01.txt", "Archery/v_Archery_g08_c01.avi two\n");
  ExpectError(absl::StatusCode::kInvalidArgument, {"trainlist01.txt:1", "'two'"});
  Write("trainlist01.txt", "v_Archery_g08_c01.avi 2\n");
  ExpectError(absl::StatusCode::kInvalidArgument, {"trainlist01.txt:1", "v_Archery_g08_c01.avi"});
}

TEST_F(Ucf101Test, MalformedTestLine) {
  Write("testlist01.txt", "Archery/a.avi 2 extra\n");
  ExpectError(absl::StatusCode::kInvalidArgument, {"testlist01.txt:1", "Archery/a.avi 2 extra"});
}

}  // namespace
}  // namespace tb
