#include "datasets/formats/listing.h"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "core/testing/test_util.h"

namespace tb {
namespace {

namespace fs = std::filesystem;

void Write(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

std::string Fresh(const std::string& name) {
  const std::string dir = testing::TmpPath(name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

TEST(SplitCsvRecord, QuotesAndEmbeddedCommas) {
  auto f = SplitCsvRecord(R"csv("passing American football (in game)",abc,"say ""hi"", ok",,7)csv");
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ(f->size(), 5u);
  EXPECT_EQ((*f)[0], "passing American football (in game)");
  EXPECT_EQ((*f)[2], "say \"hi\", ok");
  EXPECT_EQ((*f)[3], "");
  EXPECT_FALSE(SplitCsvRecord("\"open,b").ok());
  EXPECT_FALSE(SplitCsvRecord("\"a\"b,c").ok());
}

TEST(Hmdb51, OfficialSplitFiles) {
  const std::string dir = Fresh("hmdb_splits");
  // Real HMDB51 lines end with a blank; CRLF tolerated; climb vs climb_stairs.
  Write(dir + "/brush_hair_test_split1.txt",
        "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \r\n"
        "April_09_brush_hair_u_nm_np1_ba_goo_1.avi 2 \r\n"
        "Aussie_Brunette_Brushing_Long_Hair_brush_hair_u_nm_np1_ba_med_3.avi 0 \r\n");
  Write(dir + "/climb_stairs_test_split1.txt", "Stairs_climb_stairs_f_cm_np1_ba_med_0.avi 1 \n"
                                               "Stairs_climb_stairs_f_cm_np1_ba_med_1.avi 2 \n");
  Write(dir + "/climb_test_split1.txt", "Rock_climb_f_cm_np1_ba_bad_2.avi 2\n");
  Write(dir + "/climb_test_split2.txt", "Rock_climb_f_cm_np1_ba_bad_2.avi 1\n");
  auto l = ReadListing("hmdb51", "/videos", dir, 1);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->class_names, (std::vector<std::string>{"brush_hair", "climb", "climb_stairs"}));
  ASSERT_EQ(l->videos.size(), 5u);
  EXPECT_EQ(l->videos[0].relative_path, "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi");
  EXPECT_EQ(l->videos[0].split, ManifestVideo::TRAIN);
  EXPECT_EQ(l->videos[1].split, ManifestVideo::TEST);
  EXPECT_EQ(l->videos[2].relative_path, "climb/Rock_climb_f_cm_np1_ba_bad_2.avi");
  EXPECT_EQ(l->videos[2].label, 1);
  EXPECT_EQ(l->videos[4].label, 2);
  EXPECT_NE(l->videos[2].origin.find("climb_test_split1.txt:1"), std::string::npos);

  Write(dir + "/climb_test_split1.txt", "Rock_climb_f_cm_np1_ba_bad_2.avi 3\n");
  auto bad = ReadListing("hmdb51", "/videos", dir, 1);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("climb_test_split1.txt:1"), std::string::npos)
      << bad.status();
  EXPECT_NE(bad.status().message().find("'3'"), std::string::npos) << bad.status();
  auto none = ReadListing("hmdb51", "/videos", dir, 3);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("_test_split3.txt"), std::string::npos);
}

TEST(Kinetics, CsvLayoutsAndQuotedLabels) {
  const std::string root = Fresh("k400");
  const std::string csv = root + "/annotations/train.csv";
  Write(csv,
        "label,youtube_id,time_start,time_end,split\n"
        "abseiling,0347ZoDXyP0,95,105,train\n"
        "\"passing American football (in game)\",-5Jx2sy3hS0,0,10,train\n"
        "abseiling,3E7Jib8Yq5M,14,24,val\n"
        "\"passing American football (in game)\",6tRx0FnHgVw,31,41,val\n");
  Write(root + "/annotations/test.csv", "youtube_id,time_start,time_end,split\nxyz,1,11,test\n");
  // Per-split folders with labels as written (ActivityNet crawler layout).
  for (const char* f : {"train/abseiling/0347ZoDXyP0_000095_000105.mp4",
                        "train/passing American football (in game)/-5Jx2sy3hS0_000000_000010.mp4",
                        "val/abseiling/3E7Jib8Yq5M_000014_000024.mp4",
                        "val/passing American football (in game)/6tRx0FnHgVw_000031_000041.mkv"}) {
    Write(root + "/" + f, "x");
  }
  KineticsLayout layout;
  auto l = ReadKineticsListing(root, root + "/annotations", &layout);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(layout, KineticsLayout::kSplitLabel);
  EXPECT_EQ(l->class_names,
            (std::vector<std::string>{"abseiling", "passing American football (in game)"}));
  ASSERT_EQ(l->videos.size(), 4u);
  EXPECT_EQ(l->videos[0].relative_path, "train/abseiling/0347ZoDXyP0_000095_000105.mp4");
  EXPECT_EQ(l->videos[0].split, ManifestVideo::TRAIN);
  EXPECT_EQ(l->videos[1].label, 1);
  EXPECT_EQ(l->videos[2].split, ManifestVideo::TEST);
  // Found under another container extension.
  EXPECT_EQ(l->videos[3].relative_path,
            "val/passing American football (in game)/6tRx0FnHgVw_000031_000041.mkv");

  // Flat per-split folders (cvdfoundation tars as extracted).
  const std::string flat = Fresh("k400_flat");
  Write(flat + "/train/0347ZoDXyP0_000095_000105.mp4", "x");
  Write(flat + "/val/3E7Jib8Yq5M_000014_000024.mp4", "x");
  auto f = ReadKineticsListing(flat, csv, &layout);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(layout, KineticsLayout::kSplitFlat);
  EXPECT_EQ(f->videos[2].relative_path, "val/3E7Jib8Yq5M_000014_000024.mp4");

  // Underscored label folders.
  const std::string under = Fresh("k400_under");
  Write(under + "/train/passing_American_football_(in_game)/-5Jx2sy3hS0_000000_000010.mp4", "x");
  auto u = ReadKineticsListing(under, csv, &layout);
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(layout, KineticsLayout::kSplitLabelUnderscore);

  Write(root + "/bad.csv", "label,youtube_id,time_start,split\nabseiling,a,1,train\n");
  auto bad = ReadKineticsListing(root, root + "/bad.csv");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("bad.csv:1"), std::string::npos) << bad.status();
  EXPECT_NE(bad.status().message().find("time_end"), std::string::npos) << bad.status();
  Write(root + "/bad.csv", "label,youtube_id,time_start,time_end,split\n\"abseiling,a,1,2,train\n");
  bad = ReadKineticsListing(root, root + "/bad.csv");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("bad.csv:2"), std::string::npos) << bad.status();
}

TEST(PathLabelList, IntegerAndNamedLabels) {
  const std::string dir = Fresh("list_ann");
  Write(dir + "/train.txt", "a/x 1.mp4 0\nb/y.avi 1\n");
  Write(dir + "/test.txt", "a/z.mp4 0\n");
  auto l = ReadListing("list", "/v", dir, 1);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->class_names, (std::vector<std::string>{"0", "1"}));
  EXPECT_EQ(l->videos[0].relative_path, "a/x 1.mp4");
  EXPECT_EQ(l->videos[2].split, ManifestVideo::TEST);

  Write(dir + "/classes.txt", "walk\nrun\n");
  Write(dir + "/train.txt", "a/x.mp4 run\nb/y.avi walk\n");
  Write(dir + "/test.txt", "a/z.mp4 run\n");
  l = ReadListing("list", "/v", dir, 1);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->videos[0].label, 1);
  EXPECT_EQ(l->videos[1].label, 0);

  Write(dir + "/test.txt", "a/z.mp4 jump\n");
  auto bad = ReadListing("list", "/v", dir, 1);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("test.txt:1"), std::string::npos) << bad.status();
  EXPECT_NE(bad.status().message().find("jump"), std::string::npos) << bad.status();

  // Wrong extension and a path listed twice.
  Write(dir + "/test.txt", "a/z.txt run\n");
  bad = ReadListing("list", "/v", dir, 1);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("a/z.txt"), std::string::npos) << bad.status();
  EXPECT_NE(bad.status().message().find("extension"), std::string::npos) << bad.status();
  Write(dir + "/test.txt", "a/x.mp4 run\n");
  bad = ReadListing("list", "/v", dir, 1);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("already listed at"), std::string::npos) << bad.status();

  EXPECT_FALSE(ReadListing("avi", "/v", dir, 1).ok());
}

// Found by //datasets/fuzz:listing_fuzzer under UBSan (reproducer
// datasets/fuzz/regressions/listing/kinetics_seconds_1e3081_ubsan): a time
// of "1e3081" (inf as a double) was cast to int64 before its range was
// checked.
TEST(Kinetics, SecondsOutOfRangeAreAnErrorNotUndefined) {
  const std::string root = Fresh("k400_huge_seconds");
  for (const char* seconds : {"1e3081", "1e19", "nan", "inf", "-0.5", "2.5"}) {
    Write(root + "/a.csv", std::string("label,youtube_id,time_start,time_end,split\n"
                                       "abseiling,a,") +
                               seconds + ",11,train\n");
    auto l = ReadKineticsListing(root, root + "/a.csv");
    ASSERT_FALSE(l.ok()) << seconds;
    EXPECT_NE(l.status().message().find("a.csv:2"), std::string::npos) << l.status();
  }
}

// Found by //datasets/fuzz:listing_fuzzer (the reproducer is in
// datasets/fuzz/regressions/listing/): a label of 2147483647 without
// classes.txt made 2^31 class names (minutes and gigabytes; the loop's
// counter then overflowed).
TEST(PathLabelList, LabelFarBeyondAnyClassCountIsAnError) {
  const std::string dir = Fresh("list_huge_label");
  Write(dir + "/train.txt", "a/x.avi 0\nb/y.mov 2147483647\n");
  Write(dir + "/test.txt", "c/z.mpg 1\n");
  auto l = ReadListing("list", "/v", dir, 1);
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(l.status().message().find("train.txt:2: label 2147483647 would make 2147483648 "
                                      "classes (at most 100000 without classes.txt"),
            std::string::npos)
      << l.status();
  // The largest label allowed still works.
  Write(dir + "/train.txt", "a/x.avi 0\nb/y.mov 99999\n");
  l = ReadListing("list", "/v", dir, 1);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->class_names.size(), 100000u);
}

}  // namespace
}  // namespace tb
