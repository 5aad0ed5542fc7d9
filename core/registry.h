// File: core/registry.h
//
// A registry of component factories keyed by the name of the component's
// options field. A component family is configured by a message with a `oneof`
// (for example `BackboneConfig { oneof kind { R3dOptions r3d18 = 1; ... } }`);
// the field that is set picks the factory registered under that field's name.
//
// Registration happens in a static initialiser at the end of the component's
// .cc file, so its cc_library must be `alwayslink = True`:
//
//   TB_REGISTER_COMPONENT(BackboneRegistry, r3d18, MakeR3d18);
//
// Unknown names produce NotFound errors that list the registered names;
// registering a name twice is a programmer error and aborts.
#ifndef TIMEBALANCE_CORE_REGISTRY_H_
#define TIMEBALANCE_CORE_REGISTRY_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <glog/logging.h>
#include <google/protobuf/message.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"

namespace tb {

// The name of the field set in `oneof_name` of `family` (for example "r3d18"),
// or InvalidArgument naming `where` and listing the allowed field names.
absl::StatusOr<std::string> SetOneofField(const google::protobuf::Message& family,
                                          const std::string& oneof_name,
                                          const std::string& where);

template <typename Interface, typename... Args>
class Registry {
 public:
  using Factory = std::function<absl::StatusOr<std::unique_ptr<Interface>>(Args...)>;

  // `family` names the registry in error messages ("backbone", "trainer").
  explicit Registry(std::string family) : family_(std::move(family)) {}

  // Aborts on a duplicate name: two components claiming one config field is a
  // build error, not a runtime condition.
  bool Register(const std::string& name, Factory factory) {
    absl::MutexLock lock(&mu_);
    CHECK(factories_.emplace(name, std::move(factory)).second)
        << "duplicate " << family_ << " registration: '" << name << "'";
    return true;
  }

  bool Contains(const std::string& name) const {
    absl::MutexLock lock(&mu_);
    return factories_.count(name) > 0;
  }

  std::vector<std::string> Names() const {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> names;
    for (const auto& [name, unused] : factories_) names.push_back(name);
    return names;
  }

  absl::StatusOr<std::unique_ptr<Interface>> Create(const std::string& name,
                                                    Args... args) const {
    Factory factory;
    {
      absl::MutexLock lock(&mu_);
      auto it = factories_.find(name);
      if (it == factories_.end()) {
        std::vector<std::string> names;
        for (const auto& [n, unused] : factories_) names.push_back(n);
        return absl::NotFoundError(absl::StrCat(
            "unknown ", family_, " '", name, "'; registered: ",
            names.empty() ? std::string("(none linked)") : absl::StrJoin(names, ", ")));
      }
      factory = it->second;
    }
    return factory(std::forward<Args>(args)...);
  }

 private:
  const std::string family_;
  mutable absl::Mutex mu_;
  std::map<std::string, Factory> factories_;
};

}  // namespace tb

#define TB_REGISTRY_CONCAT_INNER_(a, b) a##b
#define TB_REGISTRY_CONCAT_(a, b) TB_REGISTRY_CONCAT_INNER_(a, b)

// Registers `factory` in `registry` (an expression yielding a Registry&) under
// the name of the options field `field`.
#define TB_REGISTER_COMPONENT(registry, field, factory)                       \
  static const bool TB_REGISTRY_CONCAT_(tb_registered_##field##_, __LINE__) = \
      (registry).Register(#field, factory)

#endif  // TIMEBALANCE_CORE_REGISTRY_H_
