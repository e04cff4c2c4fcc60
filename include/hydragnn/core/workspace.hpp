// SPDX-License-Identifier: BSD-3-Clause
// Workspace: the intermediates of a forward/backward pass, allocated once and reused.
//
// A pass asks for its views by label and index (e.g. "hydragnn::SchNetConv::layer_forward.x1", l)
// with their current shape. Each (label, index, scalar type) owns one slot: a raw buffer that grows
// (by 1.5x, never shrinks) when a batch needs more, and the returned view is an unmanaged view of
// the requested shape over the start of that buffer. After the largest batch of an epoch has been
// seen, a step allocates nothing: no Kokkos allocation, no initialisation.
//
// Views from a workspace are NOT zero-initialised: every kernel writing into one either overwrites
// all of it or the caller zeroes it explicitly (zeroed()).
// A view stays valid until the same slot is requested again with a larger size.
#pragma once

#include <hydragnn/core/types.hpp>

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <typeinfo>
#include <utility>

namespace hydragnn {

/// Rank-3 view of vector features: (row, Cartesian component, channel).
template <class S, class M> using VFeat = Kokkos::View<S***, Kokkos::LayoutRight, M>;

template <class M>
class Workspace {
 public:
  using memory_space = M;

  Workspace() = default;
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  Workspace(Workspace&&) = default;
  Workspace& operator=(Workspace&&) = default;

  template <class S>
  Mat<S, M> mat(const std::string& label, int index, std::size_t rows, std::size_t cols) {
    return Mat<S, M>(get<S>(label, index, rows * cols), rows, cols);
  }
  template <class S>
  Vec<S, M> vec(const std::string& label, int index, std::size_t n) {
    return Vec<S, M>(get<S>(label, index, n), n);
  }
  template <class S>
  VFeat<S, M> vec3(const std::string& label, int index, std::size_t rows, std::size_t comps, std::size_t cols) {
    return VFeat<S, M>(get<S>(label, index, rows * comps * cols), rows, comps, cols);
  }
  /// Same, set to zero on exec.
  template <class S, class Exec>
  Mat<S, M> zeroed_mat(const Exec& exec, const std::string& label, int index, std::size_t rows, std::size_t cols) {
    auto v = mat<S>(label, index, rows, cols);
    Kokkos::deep_copy(exec, v, S(0));
    return v;
  }
  template <class S, class Exec>
  Vec<S, M> zeroed_vec(const Exec& exec, const std::string& label, int index, std::size_t n) {
    auto v = vec<S>(label, index, n);
    Kokkos::deep_copy(exec, v, S(0));
    return v;
  }

  /// A host-space vector (e.g. the host side of a small device-to-host copy), same slot rules.
  template <class S>
  Kokkos::View<S*, Kokkos::HostSpace> host_vec(const std::string& label, int index, std::size_t n) {
    return Kokkos::View<S*, Kokkos::HostSpace>(get_in<S>(host_slots_, label, index, n), n);
  }

  /// A nested workspace, created on first use and kept: code that runs the same component several
  /// times in one pass (the convolutions of a conv node head reuse the layer code of the trunk, and
  /// its labels and indices) gives each instance its own scope, so their slots never alias.
  Workspace& scope(const std::string& key) {
    auto it = scopes_.find(key);
    if (it == scopes_.end()) it = scopes_.emplace(key, std::make_unique<Workspace>()).first;
    return *it->second;
  }

  /// Bytes held by all slots (nested scopes included).
  std::size_t bytes() const {
    std::size_t n = 0;
    for (const auto& s : slots_) n += s.second.extent(0);
    for (const auto& s : host_slots_) n += s.second.extent(0);
    for (const auto& s : scopes_) n += s.second->bytes();
    return n;
  }
  std::size_t num_slots() const {
    std::size_t n = slots_.size() + host_slots_.size();
    for (const auto& s : scopes_) n += s.second->num_slots();
    return n;
  }
  /// Number of times a slot was (re)allocated since construction (nested scopes included).
  std::size_t num_allocations() const {
    std::size_t n = allocations_;
    for (const auto& s : scopes_) n += s.second->num_allocations();
    return n;
  }
  void clear() {
    slots_.clear();
    host_slots_.clear();
    scopes_.clear();
  }

 private:
  using Buffer = Kokkos::View<unsigned char*, M>;
  using HostBuffer = Kokkos::View<unsigned char*, Kokkos::HostSpace>;

  template <class S>
  S* get(const std::string& label, int index, std::size_t n) {
    return get_in<S>(slots_, label, index, n);
  }

  template <class S, class Map>
  S* get_in(Map& slots, const std::string& label, int index, std::size_t n) {
    using B = typename Map::mapped_type;
    std::string key = label;
    key += '#';
    key += std::to_string(index);
    key += '#';
    key += typeid(S).name();
    const std::size_t need = n * sizeof(S);
    auto it = slots.find(key);
    if (it == slots.end() || it->second.extent(0) < need) {
      std::size_t cap = it == slots.end() ? need : std::max(need, it->second.extent(0) + it->second.extent(0) / 2);
      cap = std::max<std::size_t>(cap, 64);
      B buf(Kokkos::view_alloc(Kokkos::WithoutInitializing, label), cap);
      ++allocations_;
      if (it == slots.end())
        it = slots.emplace(std::move(key), buf).first;
      else
        it->second = buf;
    }
    return reinterpret_cast<S*>(it->second.data());
  }

  std::map<std::string, Buffer> slots_;
  std::map<std::string, HostBuffer> host_slots_;
  std::size_t allocations_ = 0;
  std::map<std::string, std::unique_ptr<Workspace>> scopes_;
};

}  // namespace hydragnn
