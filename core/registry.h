// File: core/registry.h
//
// Two-phase registries of components keyed by the name of the component's
// options field. A component family is configured by a message with a
// `oneof` (for example `BackboneConfig { oneof kind { R3dOptions r3d18 = 1;
// ... } }`); the field that is set picks the component registered under that
// field's name.
//
// Every component registers two functions:
//   - Validate(options, scope): checks the options alone (and against the
//     experiment around them, for families whose Scope carries it) without
//     building anything. Loading a config runs it for every component of every
//     pipeline stage and comparison cell before any compute. `scope.path` is
//     where the options sit ("timebalance.pretrain_distinctive.trainer.ssl.
//     objective.tclr"), so errors name the full field path.
//   - Create(options, context): builds the component. Called only with
//     options that passed Validate.
// and, optionally, examples: small valid options (text protos) from which the
// tests derive the list of what to exercise, so a new component is tested
// without editing any test.
//
// Registration is one line at the end of the component's .cc file, whose
// cc_library must be `alwayslink = True`:
//
//   TB_REGISTER_COMPONENT(BackboneRegistry(), r3d18, ValidateR3d, CreateR3d,
//                         "width_multiplier: 0.125");
//
// Unknown names produce NotFound errors that list the registered names;
// registering a name twice is a programmer error and aborts.
#ifndef TIMEBALANCE_CORE_REGISTRY_H_
#define TIMEBALANCE_CORE_REGISTRY_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <glog/logging.h>
#include <google/protobuf/message.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"

namespace tb {

// The scope of families whose components are checked on their own options:
// only the config path of those options.
struct ConfigScope {
  std::string path;
};

// "a.b" + "c" = "a.b.c"; an empty prefix gives "c".
std::string JoinConfigPath(const std::string& prefix, const std::string& field);

// The name of the field set in `oneof_name` of `family` (for example
// "r3d18"), or InvalidArgument "config field <path>: no <oneof> set; set one
// of: ..." listing the allowed field names.
absl::StatusOr<std::string> SetOneofField(const google::protobuf::Message& family,
                                          const std::string& oneof_name, const std::string& path);

// The message of the field set in `oneof_name` of `family` (it must be set
// and be a message field).
const google::protobuf::Message& SetOneofMessage(const google::protobuf::Message& family,
                                                 const std::string& oneof_name);

template <typename Interface, typename Scope, typename Context>
class ComponentRegistry {
 public:
  using Validator = std::function<absl::Status(const google::protobuf::Message&, const Scope&)>;
  using Factory = std::function<absl::StatusOr<std::unique_ptr<Interface>>(
      const google::protobuf::Message&, const Context&)>;

  // `family` names the registry in messages ("backbone", "trainer");
  // `oneof_name` is the oneof of the family's config message.
  ComponentRegistry(std::string family, std::string oneof_name)
      : family_(std::move(family)), oneof_(std::move(oneof_name)) {}

  // Registers typed functions; Options is deduced from them. Aborts on a
  // duplicate name: two components claiming one config field is a build
  // error, not a runtime condition.
  template <typename Options>
  bool Register(const std::string& name,
                absl::Status (*validate)(const Options&, const Scope&),
                absl::StatusOr<std::unique_ptr<Interface>> (*create)(const Options&,
                                                                      const Context&),
                std::vector<std::string> examples = {}) {
    Entry entry;
    entry.validate = [validate](const google::protobuf::Message& m, const Scope& s) {
      return validate(Downcast<Options>(m), s);
    };
    entry.create = [create](const google::protobuf::Message& m, const Context& c) {
      return create(Downcast<Options>(m), c);
    };
    entry.examples = std::move(examples);
    absl::MutexLock lock(&mu_);
    CHECK(entries_.emplace(name, std::move(entry)).second)
        << "duplicate " << family_ << " registration: '" << name << "'";
    return true;
  }

  bool Contains(const std::string& name) const {
    absl::MutexLock lock(&mu_);
    return entries_.count(name) > 0;
  }

  std::vector<std::string> Names() const {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> names;
    for (const auto& [name, unused] : entries_) names.push_back(name);
    return names;
  }

  // The registered examples of `name` (text protos of its options).
  std::vector<std::string> Examples(const std::string& name) const {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(name);
    return it == entries_.end() ? std::vector<std::string>() : it->second.examples;
  }

  // Validates the component selected in `family`. `scope.path` is where
  // `family` sits; the component sees it extended by its field name.
  absl::Status Validate(const google::protobuf::Message& family, Scope scope) const {
    auto name = SetOneofField(family, oneof_, scope.path);
    if (!name.ok()) return name.status();
    auto entry = Find(*name);
    if (!entry.ok()) return entry.status();
    scope.path = JoinConfigPath(scope.path, *name);
    return entry->validate(SetOneofMessage(family, oneof_), scope);
  }

  // Builds the component selected in `family`, whose options must have
  // passed Validate.
  absl::StatusOr<std::unique_ptr<Interface>> Create(const google::protobuf::Message& family,
                                                    const Context& context) const {
    auto name = SetOneofField(family, oneof_, family_);
    if (!name.ok()) return name.status();
    auto entry = Find(*name);
    if (!entry.ok()) return entry.status();
    return entry->create(SetOneofMessage(family, oneof_), context);
  }

 private:
  struct Entry {
    Validator validate;
    Factory create;
    std::vector<std::string> examples;
  };

  template <typename Options>
  static const Options& Downcast(const google::protobuf::Message& m) {
    CHECK(m.GetDescriptor() == Options::descriptor())
        << "options of type " << m.GetDescriptor()->full_name() << " given to a component of "
        << Options::descriptor()->full_name();
    return static_cast<const Options&>(m);
  }

  absl::StatusOr<Entry> Find(const std::string& name) const {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(name);
    if (it != entries_.end()) return it->second;
    std::vector<std::string> names;
    for (const auto& [n, unused] : entries_) names.push_back(n);
    return absl::NotFoundError(absl::StrCat(
        "unknown ", family_, " '", name, "'; registered: ",
        names.empty() ? std::string("(none linked)") : absl::StrJoin(names, ", ")));
  }

  const std::string family_;
  const std::string oneof_;
  mutable absl::Mutex mu_;
  std::map<std::string, Entry> entries_;
};

}  // namespace tb

#define TB_REGISTRY_CONCAT_INNER_(a, b) a##b
#define TB_REGISTRY_CONCAT_(a, b) TB_REGISTRY_CONCAT_INNER_(a, b)

// Registers `validate` and `create` in `registry` (an expression yielding a
// ComponentRegistry&) under the name of the options field `field`; the
// optional trailing arguments are example options (text protos).
#define TB_REGISTER_COMPONENT(registry, field, validate, create, ...)          \
  static const bool TB_REGISTRY_CONCAT_(tb_registered_##field##_, __LINE__) = \
      (registry).Register(#field, validate, create, {__VA_ARGS__})

#endif  // TIMEBALANCE_CORE_REGISTRY_H_
