// File: core/event_writer.h
//
// TensorBoard event files written without TensorFlow, readable by an
// unmodified TensorBoard: scalars (the Scalars tab) and text (the Text tab,
// e.g. the resolved experiment config).
//
//   ASSIGN_OR_RETURN(std::unique_ptr<EventWriter> events,
//                    EventWriter::Create(run_dir + "/tb", /*suffix=*/""));
//   RETURN_IF_ERROR(events->AddText("config", step, MarkdownPreformatted(config_text)));
//   RETURN_IF_ERROR(events->AddScalar("train/loss", step, loss));
//   RETURN_IF_ERROR(events->Flush());   // e.g. every N steps; also done on destruction
//
// File: `<dir>/events.out.tfevents.<unix seconds>.<hostname>[.<suffix>]`,
// TFRecord-framed (core/tfrecord.h) serialized tb::tensorboard::Event protos
// (core/tensorboard_event.proto, TensorFlow's field numbers). The first
// record is the `file_version: "brain.Event:2"` event, written and flushed by
// Create, so a file is valid from the moment it exists.
//
// Resuming: every EventWriter creates a new file and never appends to an
// existing one. TensorBoard reads every event file of a directory as one run,
// so a resumed run simply gets a second file next to the first; steps logged
// by the first process after its last checkpoint are logged again by the
// second (steps repeat), and TensorBoard shows both points. Two writers
// created in the same second on the same host with the same suffix would
// share a name: the second Create fails with AlreadyExists (use a suffix,
// e.g. "eval", for a second writer in one directory).
//
// Buffering: Add* append to an in-memory buffer; Flush() writes it with
// write(2) (no fsync: a killed process loses nothing that was flushed, a
// machine crash may). The buffer is also written when it exceeds
// kAutoFlushBytes and by the destructor. A write error is returned by the
// call that wrote (Flush, or the Add* that crossed kAutoFlushBytes); bytes
// not written stay buffered and the next Flush retries from where the
// failed one stopped, so the file never holds a half record followed by
// another record. The destructor can only log (glog ERROR) a failure.
//
// Thread-safe: one mutex guards the buffer and the file.
#ifndef TIMEBALANCE_CORE_EVENT_WRITER_H_
#define TIMEBALANCE_CORE_EVENT_WRITER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/tensorboard_event.pb.h"

namespace tb {

// Seconds since the Unix epoch, with sub-second precision (Event.wall_time).
double WallTimeNow();

// "events.out.tfevents.<unix_seconds>.<hostname>" plus ".<suffix>" if the
// suffix is not empty (no directory).
std::string EventFileName(int64_t unix_seconds, const std::string& hostname,
                          const std::string& suffix);

// `text` as a Markdown code block (every line indented by 4 spaces), so the
// Text tab, which renders Markdown, shows it verbatim: use it for configs.
std::string MarkdownPreformatted(std::string_view text);

class EventWriter;

// EventWriter::Create with `suffix`, or, when that name is taken (a writer
// of the same directory started in the same second, e.g. a run resumed at
// once after being killed), with `suffix`.1, .2, ...
absl::StatusOr<std::unique_ptr<EventWriter>> CreateUniqueEventWriter(const std::string& dir,
                                                                     const std::string& suffix);

class EventWriter {
 public:
  // Buffered bytes above which an Add* call writes the buffer out.
  static constexpr size_t kAutoFlushBytes = size_t{1} << 20;

  // Creates `dir` (and parents) if needed and a new event file in it, and
  // writes the file_version event. `suffix` may be empty and must not
  // contain '/'. AlreadyExists if the file name is taken, other errors name
  // the directory or file and the reason.
  static absl::StatusOr<std::unique_ptr<EventWriter>> Create(const std::string& dir,
                                                             const std::string& suffix = "");

  // Flushes and closes; failures are logged, not returned (call Close() to
  // see them).
  ~EventWriter();

  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  // One scalar point: Summary.Value{tag, simple_value}. TensorBoard stores
  // simple_value as float32, so `value` is rounded to float. `tag` must not
  // be empty ("/" groups tags in the UI, e.g. "train/loss").
  absl::Status AddScalar(const std::string& tag, int64_t step, double value,
                         double wall_time = WallTimeNow());

  // A text summary in the text plugin's format: a rank-0 DT_STRING tensor
  // holding `text`, with plugin_name "text" (empty plugin content = version
  // 0) and data class DATA_CLASS_TENSOR. TensorBoard renders it as Markdown
  // (see MarkdownPreformatted).
  absl::Status AddText(const std::string& tag, int64_t step, const std::string& text,
                       double wall_time = WallTimeNow());

  // Any event, written as given (for summaries not covered above).
  absl::Status AddEvent(const tensorboard::Event& event);

  // Writes everything buffered to the file.
  absl::Status Flush();

  // Flushes and closes the file; later calls return FailedPrecondition.
  // The file is closed even if the flush fails (then the unwritten events
  // are lost and the error says how many bytes).
  absl::Status Close();

  // Full path of the event file.
  const std::string& path() const { return path_; }

 private:
  EventWriter(std::string path, int fd);

  absl::Status AppendLocked(const tensorboard::Event& event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes buffer_; on failure keeps the unwritten bytes, and the error
  // says what becomes of them (`unwritten_fate`).
  absl::Status WriteBufferLocked(const char* unwritten_fate) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  absl::Mutex mu_;
  int fd_ ABSL_GUARDED_BY(mu_);
  std::string buffer_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tb

#endif  // TIMEBALANCE_CORE_EVENT_WRITER_H_
