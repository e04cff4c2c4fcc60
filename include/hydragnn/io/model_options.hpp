// SPDX-License-Identifier: BSD-3-Clause
// Each convolution's own options struct <-> JSON. The options list their keys with visit(v)
// (conv/<model>.hpp): v("key", member) for bool/int/double/string members and
// v.choice("key", member, table) for enumerations named by a Choice table. Optional hooks:
//   void finalize(const ConvCommon&)   fill defaults that depend on the common keys
//   template <class F> void validate(F&& fail) const   fail("key", "why") on a bad value
#pragma once

#include <hydragnn/model/registry.hpp>

#include <nlohmann/json.hpp>

#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace hydragnn {
namespace options_detail {

template <class...> using void_t = void;
template <class O, class = void> struct has_finalize : std::false_type {};
template <class O>
struct has_finalize<O, void_t<decltype(std::declval<O&>().finalize(std::declval<const ConvCommon&>()))>> : std::true_type {};
struct FailProbe {
  void operator()(const char*, const char*) const {}
};
template <class O, class = void> struct has_validate : std::false_type {};
template <class O>
struct has_validate<O, void_t<decltype(std::declval<const O&>().validate(std::declval<const FailProbe&>()))>>
    : std::true_type {};

struct ToJson {
  nlohmann::json& j;
  template <class V>
  void operator()(const char* key, V& v) {
    j[key] = v;
  }
  template <class E, std::size_t K>
  void choice(const char* key, E& v, const Choice<E> (&table)[K]) {
    for (const auto& c : table)
      if (c.value == v) {
        j[key] = c.name;
        return;
      }
    throw std::logic_error(std::string("option '") + key + "' holds a value with no name");
  }
};

struct FromJson {
  const nlohmann::json& j;
  std::string where;
  std::vector<std::string> keys;
  template <class V>
  void operator()(const char* key, V& v) {
    keys.push_back(key);
    auto it = j.find(key);
    if (it == j.end()) return;
    try {
      v = it->template get<V>();
    } catch (const nlohmann::json::exception&) {
      throw std::invalid_argument(where + "." + key + ": expected a value of the option's type, got " + it->dump());
    }
  }
  template <class E, std::size_t K>
  void choice(const char* key, E& v, const Choice<E> (&table)[K]) {
    keys.push_back(key);
    auto it = j.find(key);
    if (it == j.end()) return;
    if (it->is_string())
      for (const auto& c : table)
        if (it->template get<std::string>() == c.name) {
          v = c.value;
          return;
        }
    std::string allowed;
    for (const auto& c : table) allowed += (allowed.empty() ? "" : ", ") + std::string(c.name);
    throw std::invalid_argument(where + "." + key + ": invalid value " + it->dump() + " (allowed: " + allowed + ")");
  }
};

}  // namespace options_detail

/// Finalize (defaults from the common keys) and validate; fail(key, why) on a bad value.
template <class O, class Fail>
void finalize_options(O& o, const ConvCommon& common, Fail&& fail) {
  if constexpr (options_detail::has_finalize<O>::value) o.finalize(common);
  if constexpr (options_detail::has_validate<O>::value) o.validate(fail);
}

/// The options as a JSON object (every key, enumerations by name).
template <class O>
nlohmann::json options_to_json(const O& opt) {
  nlohmann::json j = nlohmann::json::object();
  O copy = opt;
  copy.visit(options_detail::ToJson{j});
  return j;
}

/// Options from a JSON object (e.g. a checkpoint header): absent keys keep their defaults, unknown
/// keys and ill-typed values throw std::invalid_argument naming `where`.key.
template <class O>
O options_from_json(const nlohmann::json& j, const std::string& where) {
  O o;
  if (!j.is_object()) throw std::invalid_argument(where + ": expected an object");
  options_detail::FromJson v{j, where, {}};
  o.visit(v);
  for (auto it = j.begin(); it != j.end(); ++it)
    if (std::find(v.keys.begin(), v.keys.end(), it.key()) == v.keys.end())
      throw std::invalid_argument(where + ": unknown option '" + it.key() + "'");
  return o;
}

}  // namespace hydragnn
