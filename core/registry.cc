#include "core/registry.h"

#include <google/protobuf/descriptor.h>

namespace tb {

absl::StatusOr<std::string> SetOneofField(const google::protobuf::Message& family,
                                          const std::string& oneof_name,
                                          const std::string& where) {
  const google::protobuf::Descriptor* desc = family.GetDescriptor();
  const google::protobuf::OneofDescriptor* oneof = desc->FindOneofByName(oneof_name);
  CHECK(oneof != nullptr) << desc->full_name() << " has no oneof '" << oneof_name << "'";
  const google::protobuf::FieldDescriptor* set =
      family.GetReflection()->GetOneofFieldDescriptor(family, oneof);
  if (set != nullptr) return set->name();
  std::vector<std::string> names;
  for (int i = 0; i < oneof->field_count(); ++i) names.push_back(oneof->field(i)->name());
  return absl::InvalidArgumentError(absl::StrCat(where, ": no ", oneof_name,
                                                 " set; set one of: ",
                                                 absl::StrJoin(names, ", ")));
}

}  // namespace tb
