// File: core/event_reader.h
//
// Reads back a TensorBoard event file written by core/event_writer.h: the
// TFRecord framing with both CRCs checked, then each record parsed as a
// tb::tensorboard::Event. For tests and small tools (e.g. printing a run's
// last scalars); TensorBoard itself does not need it.
#ifndef TIMEBALANCE_CORE_EVENT_READER_H_
#define TIMEBALANCE_CORE_EVENT_READER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tensorboard_event.pb.h"

namespace tb {

// Every event of `path`, in file order. NotFound (or the open error) if the
// file cannot be read; DataLoss naming the file and the byte offset of the
// record for a truncated record, a CRC mismatch or a record that is not an
// Event.
absl::StatusOr<std::vector<tensorboard::Event>> ReadEventFile(const std::string& path);

}  // namespace tb

#endif  // TIMEBALANCE_CORE_EVENT_READER_H_
