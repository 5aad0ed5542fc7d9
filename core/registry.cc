#include "core/registry.h"

#include <google/protobuf/descriptor.h>

namespace tb {

std::string JoinConfigPath(const std::string& prefix, const std::string& field) {
  if (prefix.empty()) return field;
  if (field.empty()) return prefix;
  return absl::StrCat(prefix, ".", field);
}

absl::StatusOr<std::string> SetOneofField(const google::protobuf::Message& family,
                                          const std::string& oneof_name, const std::string& path) {
  const google::protobuf::Descriptor* desc = family.GetDescriptor();
  const google::protobuf::OneofDescriptor* oneof = desc->FindOneofByName(oneof_name);
  CHECK(oneof != nullptr) << desc->full_name() << " has no oneof '" << oneof_name << "'";
  const google::protobuf::FieldDescriptor* set =
      family.GetReflection()->GetOneofFieldDescriptor(family, oneof);
  if (set != nullptr) return set->name();
  std::vector<std::string> names;
  for (int i = 0; i < oneof->field_count(); ++i) names.push_back(oneof->field(i)->name());
  return absl::InvalidArgumentError(absl::StrCat("config field ", path, ": no ", oneof_name,
                                                 " set; set one of: ",
                                                 absl::StrJoin(names, ", ")));
}

const google::protobuf::Message& SetOneofMessage(const google::protobuf::Message& family,
                                                 const std::string& oneof_name) {
  const google::protobuf::OneofDescriptor* oneof =
      family.GetDescriptor()->FindOneofByName(oneof_name);
  CHECK(oneof != nullptr) << family.GetDescriptor()->full_name() << " has no oneof '"
                          << oneof_name << "'";
  const google::protobuf::FieldDescriptor* set =
      family.GetReflection()->GetOneofFieldDescriptor(family, oneof);
  CHECK(set != nullptr && set->message_type() != nullptr)
      << family.GetDescriptor()->full_name() << "." << oneof_name << " is not a set message";
  return family.GetReflection()->GetMessage(family, set);
}

}  // namespace tb
