// EventWriter: file naming, buffering, the events read back by the C++
// reader, write errors, and an independent check of the bytes by
// testdata/check_tfevents.py run by /usr/bin/python3 with Debian's
// python3-crc32c (never skipped: a missing package fails the test).
#include "core/event_writer.h"

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/event_reader.h"
#include "core/records.h"
#include "core/testing/python_reference.h"
#include "core/testing/test_util.h"
#include "core/tfrecord.h"
#include "gtest/gtest.h"

namespace tb {
namespace {

namespace fs = std::filesystem;
using tensorboard::Event;


std::string FreshDir(const std::string& name) {
  const std::string dir = testing::TmpPath(name);
  fs::remove_all(dir);
  return dir;
}

std::vector<std::string> FilesIn(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), bytes.size());
}

std::string Hostname() {
  char name[256] = {};
  ::gethostname(name, sizeof(name) - 1);
  return name;
}

TEST(EventWriterTest, NamesTheFileLikeTensorFlow) {
  EXPECT_EQ(EventFileName(1700000000, "host", ""), "events.out.tfevents.1700000000.host");
  EXPECT_EQ(EventFileName(1700000000, "host", "eval"), "events.out.tfevents.1700000000.host.eval");

  const std::string dir = FreshDir("naming") + "/nested/tb";  // parents are created
  const double before = WallTimeNow();
  auto writer = EventWriter::Create(dir, "train");
  const double after = WallTimeNow();
  ASSERT_TRUE(writer.ok()) << writer.status();
  const std::string name = fs::path((*writer)->path()).filename().string();
  EXPECT_EQ(fs::path((*writer)->path()).parent_path().string(), dir);
  bool matches = false;
  for (int64_t t = static_cast<int64_t>(before); t <= static_cast<int64_t>(after); ++t) {
    matches = matches || name == EventFileName(t, Hostname(), "train");
  }
  EXPECT_TRUE(matches) << name;
}

TEST(EventWriterTest, HeaderIsOnDiskAtOnceAndEventsOnFlush) {
  const std::string dir = FreshDir("buffering");
  const double before = WallTimeNow();
  auto created = EventWriter::Create(dir, "");
  const double after = WallTimeNow();
  ASSERT_TRUE(created.ok()) << created.status();
  EventWriter& writer = **created;

  auto events = ReadEventFile(writer.path());
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].file_version(), "brain.Event:2");
  EXPECT_EQ((*events)[0].step(), 0);
  EXPECT_GE((*events)[0].wall_time(), before);
  EXPECT_LE((*events)[0].wall_time(), after);

  ASSERT_TRUE(writer.AddScalar("train/loss", 10, 0.5, 1000.25).ok());
  ASSERT_TRUE(writer.AddText("config", 0, "lr: 0.1\nsteps: 5", 1000.5).ok());
  const double default_before = WallTimeNow();
  ASSERT_TRUE(writer.AddScalar("train/acc", 11, 0.1).ok());
  const double default_after = WallTimeNow();
  EXPECT_EQ(ReadEventFile(writer.path())->size(), 1u) << "Add* must only buffer";

  ASSERT_TRUE(writer.Flush().ok());
  events = ReadEventFile(writer.path());
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 4u);

  const Event& loss = (*events)[1];
  EXPECT_EQ(loss.wall_time(), 1000.25);
  EXPECT_EQ(loss.step(), 10);
  ASSERT_EQ(loss.summary().value_size(), 1);
  EXPECT_EQ(loss.summary().value(0).tag(), "train/loss");
  EXPECT_EQ(loss.summary().value(0).simple_value(), 0.5f);
  EXPECT_FALSE(loss.summary().value(0).has_metadata());

  const Event& text = (*events)[2];
  EXPECT_EQ(text.wall_time(), 1000.5);
  const auto& value = text.summary().value(0);
  EXPECT_EQ(value.tag(), "config");
  EXPECT_EQ(value.metadata().plugin_data().plugin_name(), "text");
  EXPECT_EQ(value.metadata().data_class(), tensorboard::DATA_CLASS_TENSOR);
  EXPECT_EQ(value.tensor().dtype(), tensorboard::DT_STRING);
  EXPECT_TRUE(value.tensor().has_tensor_shape());
  EXPECT_EQ(value.tensor().tensor_shape().dim_size(), 0);
  ASSERT_EQ(value.tensor().string_val_size(), 1);
  EXPECT_EQ(value.tensor().string_val(0), "lr: 0.1\nsteps: 5");

  const Event& acc = (*events)[3];
  EXPECT_GE(acc.wall_time(), default_before);
  EXPECT_LE(acc.wall_time(), default_after);
  EXPECT_EQ(acc.summary().value(0).simple_value(), 0.1f);
}

TEST(EventWriterTest, DestructorFlushes) {
  const std::string dir = FreshDir("destructor");
  std::string path;
  {
    auto writer = EventWriter::Create(dir, "");
    ASSERT_TRUE(writer.ok()) << writer.status();
    path = (*writer)->path();
    ASSERT_TRUE((*writer)->AddScalar("x", 1, 2.0).ok());
  }
  auto events = ReadEventFile(path);
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_EQ(events->size(), 2u);
}

TEST(EventWriterTest, LargeBufferIsWrittenWithoutFlush) {
  const std::string dir = FreshDir("autoflush");
  auto writer = EventWriter::Create(dir, "");
  ASSERT_TRUE(writer.ok()) << writer.status();
  const std::string text(EventWriter::kAutoFlushBytes / 4 + 1, 'a');
  for (int i = 0; i < 4; ++i) ASSERT_TRUE((*writer)->AddText("big", i, text).ok());
  auto events = ReadEventFile((*writer)->path());
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_EQ(events->size(), 5u);
}

TEST(EventWriterTest, RejectsBadArgumentsAndUseAfterClose) {
  EXPECT_EQ(EventWriter::Create(FreshDir("bad_suffix"), "a/b").status().code(),
            absl::StatusCode::kInvalidArgument);

  const std::string file = testing::TmpPath("not_a_dir");
  WriteBytes(file, "x");
  auto under_file = EventWriter::Create(file + "/tb", "");
  ASSERT_FALSE(under_file.ok());
  EXPECT_TRUE(absl::StrContains(under_file.status().message(), file + "/tb"))
      << under_file.status();

  auto writer = EventWriter::Create(FreshDir("closed"), "");
  ASSERT_TRUE(writer.ok()) << writer.status();
  EXPECT_EQ((*writer)->AddScalar("", 0, 1.0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*writer)->AddText("", 0, "x").code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE((*writer)->Close().ok());
  EXPECT_EQ((*writer)->AddScalar("x", 0, 1.0).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*writer)->Flush().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*writer)->Close().code(), absl::StatusCode::kFailedPrecondition);
}

// A resumed run: the second process gets its own file; the first is untouched.
TEST(EventWriterTest, SecondWriterGetsItsOwnFile) {
  const std::string dir = FreshDir("resume");
  std::string first_path, first_bytes;
  {
    auto first = EventWriter::Create(dir, "");
    ASSERT_TRUE(first.ok()) << first.status();
    ASSERT_TRUE((*first)->AddScalar("loss", 100, 1.0).ok());
    first_path = (*first)->path();
  }
  first_bytes = testing::ReadAll(first_path);
  auto second = EventWriter::Create(dir, "resumed");
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_TRUE((*second)->AddScalar("loss", 100, 0.9).ok());  // step repeats
  ASSERT_TRUE((*second)->Flush().ok());
  EXPECT_EQ(FilesIn(dir).size(), 2u);
  EXPECT_EQ(testing::ReadAll(first_path), first_bytes);
  EXPECT_EQ(ReadEventFile((*second)->path())->size(), 2u);
}

TEST(EventWriterTest, TakenNameIsAlreadyExists) {
  const std::string dir = FreshDir("taken");
  fs::create_directories(dir);
  // Occupy the names of this second and the next few, as another writer would.
  const int64_t now = static_cast<int64_t>(WallTimeNow());
  for (int64_t t = now; t <= now + 3; ++t) {
    WriteBytes(dir + "/" + EventFileName(t, Hostname(), "x"), "other writer");
  }
  auto writer = EventWriter::Create(dir, "x");
  ASSERT_FALSE(writer.ok());
  EXPECT_EQ(writer.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(absl::StrContains(writer.status().message(), dir + "/events.out.tfevents."))
      << writer.status();
  for (const std::string& name : FilesIn(dir)) {
    EXPECT_EQ(testing::ReadAll(dir + "/" + name), "other writer") << name;
  }
}

// RLIMIT_FSIZE makes write(2) stop part-way with EFBIG: Flush must report the
// error naming the file and keep the rest, so that a later Flush completes
// the file without a broken record.
TEST(EventWriterTest, WriteErrorIsReturnedAndRetried) {
  auto writer = EventWriter::Create(FreshDir("write_error"), "");
  ASSERT_TRUE(writer.ok()) << writer.status();
  const std::string path = (*writer)->path();
  for (int step = 0; step < 20; ++step) {
    ASSERT_TRUE((*writer)->AddScalar("loss", step, 1.0 / (step + 1)).ok());
  }
  const auto header_size = fs::file_size(path);

  rlimit old_limit;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  rlimit small = old_limit;
  small.rlim_cur = header_size + 50;  // a few records in, inside a record
  auto old_handler = signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  const absl::Status failed = (*writer)->Flush();
  setrlimit(RLIMIT_FSIZE, &old_limit);
  signal(SIGXFSZ, old_handler);

  ASSERT_FALSE(failed.ok());
  EXPECT_TRUE(absl::StrContains(failed.message(), path)) << failed;
  EXPECT_TRUE(absl::StrContains(failed.message(), "kept for the next Flush")) << failed;
  EXPECT_EQ(fs::file_size(path), header_size + 50);
  EXPECT_FALSE(ReadEventFile(path).ok()) << "a half-written record must be visible";

  ASSERT_TRUE((*writer)->Flush().ok());
  auto events = ReadEventFile(path);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 21u);
  EXPECT_EQ((*events)[20].step(), 19);
}

TEST(EventWriterTest, ReaderReportsTruncationAndBadCrcWithOffset) {
  const std::string dir = FreshDir("damage");
  std::string path;
  {
    auto writer = EventWriter::Create(dir, "");
    ASSERT_TRUE(writer.ok()) << writer.status();
    ASSERT_TRUE((*writer)->AddScalar("a", 1, 1.0, 5.0).ok());
    ASSERT_TRUE((*writer)->AddScalar("b", 2, 2.0, 6.0).ok());
    path = (*writer)->path();
  }
  const std::string bytes = testing::ReadAll(path);
  auto records = ParseTfRecords(bytes, path);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 3u);
  const uint64_t last = (*records)[2].offset;

  const std::string truncated = testing::TmpPath("truncated.tfevents");
  WriteBytes(truncated, bytes.substr(0, bytes.size() - 3));
  auto events = ReadEventFile(truncated);
  ASSERT_FALSE(events.ok());
  EXPECT_EQ(events.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(absl::StrContains(events.status().message(), truncated)) << events.status();
  EXPECT_TRUE(absl::StrContains(events.status().message(),
                                absl::StrCat("byte offset ", last, ": truncated")))
      << events.status();

  const std::string flipped = testing::TmpPath("flipped.tfevents");
  std::string bad = bytes;
  bad[last + 14] ^= 0x20;
  WriteBytes(flipped, bad);
  events = ReadEventFile(flipped);
  ASSERT_FALSE(events.ok());
  EXPECT_TRUE(absl::StrContains(events.status().message(),
                                absl::StrCat("byte offset ", last, ": data CRC mismatch")))
      << events.status();

  EXPECT_FALSE(ReadEventFile(testing::TmpPath("no_such_file")).ok());
}

TEST(EventWriterTest, MarkdownPreformattedIndentsEveryLine) {
  EXPECT_EQ(MarkdownPreformatted("a: 1\n  b: 2"), "    a: 1\n      b: 2\n");
  EXPECT_EQ(MarkdownPreformatted(""), "    \n");
}

// ---- Independent reader ------------------------------------------------

// Runs the script; returns its output and appends "exit=N".
std::string RunChecker(const std::string& args) {
  return testing::RunCommand(
      absl::StrCat(testing::kReferencePython, " ",
                   testing::RunfilePath("core/testdata/check_tfevents.py"), " ", args,
                   " 2>&1; echo \"exit=$?\""));
}

TEST(EventWriterPythonTest, IndependentReaderAgrees) {
  const absl::Status available = testing::RequirePythonModules({"crc32c"});
  ASSERT_TRUE(available.ok()) << available;

  // A config long enough for a 3-byte length varint, with UTF-8 and quotes.
  std::string config = "# resolved config \xC3\xA9t\xC3\xA9 \"quoted\" \\ tab\t\n";
  while (config.size() < 20000) config += "trainer { steps: 1000 lr: 0.05 }\n";

  const std::string dir = FreshDir("python");
  std::string path;
  std::vector<std::string> expected;
  const double before = WallTimeNow();
  {
    auto writer = EventWriter::Create(dir, "check");
    ASSERT_TRUE(writer.ok()) << writer.status();
    path = (*writer)->path();
    const double after = WallTimeNow();
    expected.push_back(absl::StrFormat(
        R"({"step": 0, "wall_time_range": [%.17g, %.17g], "file_version": "brain.Event:2"})",
        before, after));

    ASSERT_TRUE((*writer)->AddText("config", 0, config, 1700000000.125).ok());
    expected.push_back(absl::StrFormat(R"({"step": 0, "wall_time": %.17g, "text": ["config", %s]})",
                                       1700000000.125, JsonString(config)));
    ASSERT_TRUE((*writer)->AddText("notes/short", 3, "", 1700000001.0).ok());
    expected.push_back(R"({"step": 3, "wall_time": 1700000001.0, "text": ["notes/short", ""]})");

    struct Point {
      const char* tag;
      int64_t step;
      double value;
      double wall_time;
    };
    const Point points[] = {
        {"train/loss", 1, 2.302585092994046, 1700000002.5},
        {"train/loss", 2, 0.0, 1700000003.75},  // zero must still be written
        {"eval/top1", 1234567890123, -17.25, 1700000004.0},
        {"eval/top1", 1234567890124, 1e-30, 1700000005.000001},
    };
    for (const Point& p : points) {
      ASSERT_TRUE((*writer)->AddScalar(p.tag, p.step, p.value, p.wall_time).ok());
      expected.push_back(
          absl::StrFormat(R"({"step": %d, "wall_time": %.17g, "scalar": [%s, %.17g]})", p.step,
                          p.wall_time, JsonString(p.tag), p.value));
    }
    const double now_before = WallTimeNow();
    ASSERT_TRUE((*writer)->AddScalar("train/lr", 7, 0.05).ok());  // default wall_time
    expected.push_back(absl::StrFormat(
        R"({"step": 7, "wall_time_range": [%.17g, %.17g], "scalar": ["train/lr", 0.05]})",
        now_before, WallTimeNow()));
  }  // destructor flushes

  const std::string expected_path = testing::TmpPath("python_expected.json");
  {
    std::ofstream out(expected_path, std::ios::binary);
    out << "{\"events\": [\n";
    for (size_t i = 0; i < expected.size(); ++i) {
      out << expected[i] << (i + 1 < expected.size() ? ",\n" : "\n");
    }
    out << "]}\n";
  }

  const std::string ok = RunChecker(absl::StrCat(path, " ", expected_path));
  EXPECT_TRUE(absl::EndsWith(ok, "exit=0\n")) << ok;
  EXPECT_TRUE(absl::StrContains(ok, "8 events OK")) << ok;

  // The checker must actually look: a flipped byte in the text and a
  // truncated file are rejected, and a wrong expectation too.
  const std::string bytes = testing::ReadAll(path);
  const std::string flipped = testing::TmpPath("python_flipped.tfevents");
  std::string bad = bytes;
  bad[bad.find("trainer {")] ^= 0x01;
  WriteBytes(flipped, bad);
  const std::string flipped_out = RunChecker(absl::StrCat(flipped, " ", expected_path));
  EXPECT_TRUE(absl::EndsWith(flipped_out, "exit=1\n")) << flipped_out;
  EXPECT_TRUE(absl::StrContains(flipped_out, "data CRC mismatch")) << flipped_out;

  const std::string truncated = testing::TmpPath("python_truncated.tfevents");
  WriteBytes(truncated, bytes.substr(0, bytes.size() - 1));
  const std::string truncated_out = RunChecker(absl::StrCat(truncated, " ", expected_path));
  EXPECT_TRUE(absl::EndsWith(truncated_out, "exit=1\n")) << truncated_out;
  EXPECT_TRUE(absl::StrContains(truncated_out, "truncated")) << truncated_out;

  const std::string wrong_path = testing::TmpPath("python_wrong.json");
  std::string wrong = testing::ReadAll(expected_path);
  wrong.replace(wrong.find("\"train/lr\", 0.05"), 16, "\"train/lr\", 0.06");
  WriteBytes(wrong_path, wrong);
  const std::string wrong_out = RunChecker(absl::StrCat(path, " ", wrong_path));
  EXPECT_TRUE(absl::EndsWith(wrong_out, "exit=1\n")) << wrong_out;
  EXPECT_TRUE(absl::StrContains(wrong_out, "simple_value")) << wrong_out;
}

}  // namespace
}  // namespace tb
