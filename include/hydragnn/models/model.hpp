// SPDX-License-Identifier: BSD-3-Clause
// Model<T, Conv>: species embedding -> num_conv_layers x Conv -> heads.
//
//  * Conv is a policy (SchNetConv, EGNNConv) providing edge features, layer forward and backward.
//  * The conservative energy head is a per-atom MLP e_i; E_g = sum_{i in g} (scale e_i + shift + ref[Z_i]),
//    accumulated in double.
//  * Direct heads: graph heads (pooling -> shared MLP -> per-head MLP) and node heads (per-head MLP).
//
// Every forward/backward is generic in the scalar S (T or Dual<T>); parameters are real T in one flat
// buffer, parameter gradients are S in a buffer of the same layout.
#pragma once

#include <hydragnn/core/batch.hpp>
#include <hydragnn/kernels/segment.hpp>
#include <hydragnn/models/egnn.hpp>
#include <hydragnn/models/schnet.hpp>
#include <hydragnn/models/spec.hpp>
#include <hydragnn/nn/mlp.hpp>

#include <random>

namespace hydragnn {

template <class T, class Conv, class Exec = Kokkos::DefaultExecutionSpace>
class Model {
 public:
  using real_type = T;
  using conv_type = Conv;
  using exec_space = Exec;
  using memory_space = mem_t<Exec>;
  using M = memory_space;

  template <class S> struct Forward {
    Mat<S, M> r;  ///< E x 3 edge vectors
    typename Conv::template EdgeCache<S, M> edge;
    std::vector<Mat<S, M>> h;  ///< h[0] embedding, h[l+1] output of conv l
    std::vector<typename Conv::template LayerCache<S, M>> layer;
    typename MLP::template Cache<S, M> energy_cache;
    Mat<S, M> e_atom;                        ///< N x 1 per-atom network output
    Vec<rebind_t<S, double>, M> energy;      ///< G, eV
    Mat<S, M> pooled;
    Mat<int, M> pool_arg;
    typename MLP::template Cache<S, M> shared_cache;
    Mat<S, M> shared_out;
    std::vector<typename MLP::template Cache<S, M>> head_cache;
    std::vector<Mat<S, M>> head_out;  ///< per direct head: G x dim or N x dim
  };

  Model() = default;
  explicit Model(const ModelSpec& spec) : spec_(spec) {
    ParamAllocator alloc;
    const int H = spec.hidden_dim;
    emb_off_ = long(alloc.take(std::size_t(spec.num_species()) * H, 1.0));
    conv_ = Conv(alloc, spec);
    if (spec.energy) {
      std::vector<int> dims{H};
      dims.insert(dims.end(), spec.energy_head_dims.begin(), spec.energy_head_dims.end());
      dims.push_back(1);
      energy_head_ = MLP(alloc, dims, spec.act, false);
    }
    for (const auto& hd : spec.heads) has_graph_heads_ = has_graph_heads_ || !hd.node;
    if (has_graph_heads_ && spec.graph_num_sharedlayers > 0) {
      std::vector<int> dims{H};
      for (int k = 0; k < spec.graph_num_sharedlayers; ++k) dims.push_back(spec.graph_dim_sharedlayers);
      shared_ = MLP(alloc, dims, spec.act, true);
    }
    for (const auto& hd : spec.heads) {
      std::vector<int> dims{hd.node ? H : (shared_.layers.empty() ? H : spec.graph_dim_sharedlayers)};
      const auto& hidden = hd.node ? spec.node_head_dims : spec.graph_head_dims;
      dims.insert(dims.end(), hidden.begin(), hidden.end());
      dims.push_back(hd.dim);
      heads_.push_back(MLP(alloc, dims, spec.act, false));
    }
    init_ranges_ = alloc.ranges;
    params_ = Vec<T, M>("hydragnn::Model::params", alloc.size);
    ref_ = Vec<double, M>("hydragnn::Model::ref_energy", std::max<std::size_t>(1, spec.species.size()));
    set_reference_energies(spec.ref_energy);
  }

  const ModelSpec& spec() const { return spec_; }
  std::size_t num_params() const { return params_.extent(0); }
  Vec<T, M> params() const { return params_; }
  const Conv& conv() const { return conv_; }

  /// Deterministic initialisation from a seed (uniform ranges recorded by the allocator).
  void initialize(std::uint64_t seed) {
    auto h = Kokkos::create_mirror_view(params_);
    std::mt19937_64 rng(seed);
    for (const auto& r : init_ranges_) {
      std::uniform_real_distribution<double> u(-r.bound, r.bound);
      for (std::size_t i = 0; i < r.size; ++i) h(r.offset + i) = T(u(rng));
    }
    Kokkos::deep_copy(params_, h);
  }
  void set_reference_energies(const std::vector<double>& ref) {
    spec_.ref_energy = ref;
    spec_.ref_energy.resize(spec_.species.size(), 0.0);
    auto h = Kokkos::create_mirror_view(ref_);
    for (std::size_t i = 0; i < h.extent(0); ++i) h(i) = i < spec_.ref_energy.size() ? spec_.ref_energy[i] : 0.0;
    Kokkos::deep_copy(ref_, h);
  }
  void set_energy_normalisation(double scale, double shift) {
    spec_.energy_scale = scale;
    spec_.energy_shift = shift;
  }

  /// Edge vectors r_e = pos[dst] - pos[src] + S_e in double, with optional tangent (E x 3) for a dual pass.
  template <class S>
  Mat<S, M> edge_vectors(const Exec& exec, const Batch<M>& b, const Mat<double, M>& tangent = {}) const {
    Mat<S, M> r("hydragnn::Model::edge_vectors", b.num_edges, 3);
    auto pos = b.pos;
    auto shift = b.shift;
    auto dst = b.dst;
    auto src = b.src;
    const bool has_t = tangent.extent(0) > 0;
    Kokkos::parallel_for(
        "hydragnn::Model::edge_vectors", Kokkos::RangePolicy<Exec>(exec, 0, b.num_edges), KOKKOS_LAMBDA(const long e) {
          for (int a = 0; a < 3; ++a) {
            const double v = pos(dst(e), a) - pos(src(e), a) + shift(e, a);
            r(e, a) = scalar_traits<S>::make(real_t<S>(v), real_t<S>(has_t ? tangent(e, a) : 0.0));
          }
        });
    return r;
  }

  /// Forward pass on given edge vectors.
  template <class S>
  Forward<S> forward(const Exec& exec, const Batch<M>& b, const Mat<S, M>& r) const {
    ProfileRegion region("hydragnn::Model::forward");
    Forward<S> f;
    const CVec<T, M> p = params_;
    const int N = b.num_atoms, G = b.num_graphs, H = spec_.hidden_dim;
    f.r = r;
    f.edge = conv_.template edge_forward<Exec, S>(exec, b, r);
    // embedding
    Mat<S, M> h0("hydragnn::Model::embedding", N, H);
    {
      auto sp = b.species;
      const long off = emb_off_;
      Kokkos::parallel_for(
          "hydragnn::Model::embedding", Kokkos::RangePolicy<Exec>(exec, 0, long(N) * H), KOKKOS_LAMBDA(const long k) {
            const long i = k / H, c = k % H;
            h0(i, c) = S(p(off + long(sp(i)) * H + c));
          });
    }
    f.h.push_back(h0);
    f.layer.resize(conv_.layers.size());
    for (std::size_t l = 0; l < conv_.layers.size(); ++l)
      f.h.push_back(conv_.template layer_forward<Exec, S, T>(exec, int(l), p, b, f.edge, f.h[l], f.layer[l]));
    const Mat<S, M>& hL = f.h.back();
    // conservative energy head
    f.energy = Vec<rebind_t<S, double>, M>("hydragnn::Model::energy", G);
    if (spec_.energy) {
      f.e_atom = energy_head_.forward<Exec, S, T>(exec, p, hL, f.energy_cache);
      auto e_atom = f.e_atom;
      auto energy = f.energy;
      auto gptr = b.graph_ptr;
      auto species = b.species;
      auto ref = ref_;
      const double scale = spec_.energy_scale, shift = spec_.energy_shift;
      using SD = rebind_t<S, double>;
      Kokkos::parallel_for(
          "hydragnn::Model::energy_sum", Kokkos::RangePolicy<Exec>(exec, 0, G), KOKKOS_LAMBDA(const long g) {
            SD acc(0.0);
            for (int i = gptr(g); i < gptr(g + 1); ++i)
              acc += scalar_cast<SD>(e_atom(i, 0)) * scale + (shift + ref(species(i)));
            energy(g) = acc;
          });
    }
    // direct heads
    if (!spec_.heads.empty()) {
      if (has_graph_heads_) {
        pool_forward<S>(exec, b, hL, f);
        f.shared_out = shared_.layers.empty() ? f.pooled : shared_.forward<Exec, S, T>(exec, p, f.pooled, f.shared_cache);
      }
      f.head_cache.resize(heads_.size());
      for (std::size_t k = 0; k < heads_.size(); ++k) {
        const Mat<S, M>& in = spec_.heads[k].node ? hL : f.shared_out;
        f.head_out.push_back(heads_[k].forward<Exec, S, T>(exec, p, in, f.head_cache[k]));
      }
    }
    return f;
  }

  /// Backward: given dL/dE_g (Ebar, G) and dL/d(head output) (head_bar, empty views for unused heads),
  /// accumulate dL/dparams into g and return dL/dr (E x 3).
  template <class S>
  Mat<S, M> backward(const Exec& exec, const Batch<M>& b, const Forward<S>& f, const Vec<S, M>& Ebar,
                     const std::vector<Mat<S, M>>& head_bar, const Vec<S, M>& g) const {
    ProfileRegion region("hydragnn::Model::backward");
    const CVec<T, M> p = params_;
    const int N = b.num_atoms, H = spec_.hidden_dim;
    Mat<S, M> hbar("hydragnn::Model::backward", N, H);
    if (spec_.energy && Ebar.extent(0) > 0) {
      Mat<S, M> ebar("hydragnn::Model::backward", N, 1);
      auto ag = b.atom_graph;
      using R = real_t<S>;
      const R scale = R(spec_.energy_scale);
      Kokkos::parallel_for(
          "hydragnn::Model::energy_sum_backward", Kokkos::RangePolicy<Exec>(exec, 0, N),
          KOKKOS_LAMBDA(const long i) { ebar(i, 0) = Ebar(ag(i)) * scale; });
      Mat<S, M> t = energy_head_.backward<Exec, S, T>(exec, p, f.energy_cache, ebar, g);
      kernels::add_into<Exec, S>(exec, t, hbar);
    }
    if (!spec_.heads.empty()) {
      Mat<S, M> shared_bar;
      for (std::size_t k = 0; k < heads_.size(); ++k) {
        if (k >= head_bar.size() || head_bar[k].extent(0) == 0) continue;
        Mat<S, M> inbar = heads_[k].backward<Exec, S, T>(exec, p, f.head_cache[k], head_bar[k], g);
        if (spec_.heads[k].node) {
          kernels::add_into<Exec, S>(exec, inbar, hbar);
        } else if (shared_bar.extent(0) == 0) {
          shared_bar = inbar;
        } else {
          kernels::add_into<Exec, S>(exec, inbar, shared_bar);
        }
      }
      if (shared_bar.extent(0) > 0) {
        Mat<S, M> pooled_bar =
            shared_.layers.empty() ? shared_bar : shared_.backward<Exec, S, T>(exec, p, f.shared_cache, shared_bar, g);
        pool_backward<S>(exec, b, f, pooled_bar, hbar);
      }
    }
    auto eg = conv_.template edge_grad<Exec, S>(b);
    for (std::size_t l = conv_.layers.size(); l-- > 0;)
      hbar = conv_.template layer_backward<Exec, S, T>(exec, int(l), p, b, f.edge, f.h[l], f.layer[l], hbar, g, eg);
    // embedding backward: one thread per (species, channel), summing that species' atoms in order
    {
      auto sperm = b.species_perm;
      auto sptr = b.species_ptr;
      const long off = emb_off_;
      const long ns = spec_.num_species();
      Kokkos::parallel_for(
          "hydragnn::Model::embedding_backward", Kokkos::RangePolicy<Exec>(exec, 0, ns * H), KOKKOS_LAMBDA(const long k) {
            const long s = k / H, c = k % H;
            S acc(0);
            for (int q = sptr(s); q < sptr(s + 1); ++q) acc += hbar(sperm(q), c);
            g(off + s * H + c) += acc;
          });
    }
    Mat<S, M> rbar("hydragnn::Model::backward_rbar", b.num_edges, 3);
    conv_.template edge_backward<Exec, S>(exec, b, f.r, f.edge, eg, rbar);
    return rbar;
  }

  // Public, not private: nvcc rejects extended (KOKKOS_LAMBDA) lambdas inside private or
  // protected member functions. Implementation detail of forward()/backward().
  template <class S>
  void pool_forward(const Exec& exec, const Batch<M>& b, const Mat<S, M>& h, Forward<S>& f) const {
    const int G = b.num_graphs, H = spec_.hidden_dim;
    f.pooled = Mat<S, M>("hydragnn::Model::pool_forward", G, H);
    if (spec_.pooling == Pooling::Max) {
      f.pool_arg = Mat<int, M>("hydragnn::Model::pool_forward", G, H);
      kernels::segment_max<Exec, S>(exec, h, b.graph_ptr, f.pooled, f.pool_arg);
      return;
    }
    kernels::segment_sum<Exec, S>(exec, h, b.graph_ptr, f.pooled, false);
    if (spec_.pooling == Pooling::Mean) {
      auto pooled = f.pooled;
      auto inv = b.inv_count;
      Kokkos::parallel_for(
          "hydragnn::Model::pool_mean", Kokkos::RangePolicy<Exec>(exec, 0, long(G) * H), KOKKOS_LAMBDA(const long k) {
            pooled(k / H, k % H) = pooled(k / H, k % H) * real_t<S>(inv(k / H));
          });
    }
  }
  template <class S>
  void pool_backward(const Exec& exec, const Batch<M>& b, const Forward<S>& f, const Mat<S, M>& pbar,
                     const Mat<S, M>& hbar) const {
    const int N = b.num_atoms, H = spec_.hidden_dim;
    if (spec_.pooling == Pooling::Max) {
      kernels::segment_max_backward<Exec, S>(exec, pbar, f.pool_arg, b.atom_graph, hbar, true);
      return;
    }
    auto ag = b.atom_graph;
    auto inv = b.inv_count;
    const bool mean = spec_.pooling == Pooling::Mean;
    Kokkos::parallel_for(
        "hydragnn::Model::pool_backward", Kokkos::RangePolicy<Exec>(exec, 0, long(N) * H), KOKKOS_LAMBDA(const long k) {
          const long i = k / H, c = k % H;
          const int gi = ag(i);
          hbar(i, c) += mean ? pbar(gi, c) * real_t<S>(inv(gi)) : pbar(gi, c);
        });
  }

 private:
  ModelSpec spec_;
  long emb_off_ = 0;
  bool has_graph_heads_ = false;  ///< any direct head on pooled (graph-level) features
  Conv conv_;
  MLP energy_head_, shared_;
  std::vector<MLP> heads_;
  std::vector<ParamAllocator::Range> init_ranges_;
  Vec<T, M> params_;
  Vec<double, M> ref_;
};

}  // namespace hydragnn
