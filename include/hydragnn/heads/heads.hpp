// SPDX-License-Identifier: BSD-3-Clause
// Output heads on the node features of the trunk:
//  * the conservative energy head, one of
//    - per atom (HydraGNN's node head "mlp" named energy): an MLP e_i,
//      E_g = sum_{i in g} (scale e_i + shift + ref[Z_i]), accumulated in double;
//    - pooled (HydraGNN's graph head named energy, energy_pooled): pooling -> the graph heads' shared
//      MLP -> an MLP y_g, E_g = scale y_g + sum_{i in g} (shift + ref[Z_i]);
//  * direct graph heads: pooling (mean | sum | max) -> shared MLP -> per-head MLP;
//  * direct node heads: per-head MLP on every atom.
// Per-layer readout (conv::PerLayer): one energy MLP per layer, e_i = sum_l e_i^l.
#pragma once

#include <hydragnn/kernels/readout.hpp>
#include <hydragnn/kernels/segment.hpp>
#include <hydragnn/core/batch.hpp>
#include <hydragnn/nn/mlp.hpp>

#include <stdexcept>
#include <vector>

namespace hydragnn {

enum class Pooling { Mean, Sum, Max };

/// What the heads are built from (ModelSpec, model/spec.hpp, extends it).
struct HeadsSpec {
  int hidden_dim = 64;
  Activation act = Activation::SiLU;  ///< stack activation (also between head layers)
  Pooling pooling = Pooling::Mean;

  bool energy = true;                 ///< conservative energy head (forces and stress are its derivatives)
  bool energy_pooled = false;         ///< the energy is a graph head (pooling -> shared -> MLP), not a per-atom sum
  std::vector<int> energy_head_dims{32, 32};
  int graph_num_sharedlayers = 1, graph_dim_sharedlayers = 32;
  std::vector<int> graph_head_dims{32, 32};
  std::vector<int> node_head_dims{32, 32};
  std::vector<HeadDef> heads;         ///< direct heads
  bool head_variance = false;         ///< GaussianNLL: each direct head also outputs dim values s (variance s^2)

  double energy_scale = 1.0;          ///< per-atom network output is multiplied by this (eV)
  double energy_shift = 0.0;          ///< per-atom constant added (eV)
};

class Heads {
 public:
  template <class S, class M>
  struct Cache {
    std::vector<typename MLP::template Cache<S, M>> energy;  ///< one per readout layer (pooled: one)
    Mat<S, M> e_graph;                                      ///< G x 1 (pooled energy head)
    Mat<S, M> e_atom;                                       ///< N x 1
    Vec<rebind_t<S, double>, M> energy_g;                   ///< G, eV
    Mat<S, M> pooled, shared_out;
    Mat<int, M> pool_arg;
    typename MLP::template Cache<S, M> shared;
    std::vector<typename MLP::template Cache<S, M>> head;
    std::vector<Mat<S, M>> head_out;  ///< per direct head: G x dim or N x dim
  };

  Heads() = default;
  /// readout_layers: 1 (last layer) or num_conv_layers (per-layer readout).
  Heads(ParamAllocator& alloc, const HeadsSpec& spec, int readout_layers) {
    const int H = spec.hidden_dim;
    energy_pooled_ = spec.energy && spec.energy_pooled;
    if (energy_pooled_ && readout_layers != 1)
      throw std::invalid_argument("hydragnn::Heads: a pooled energy head reads the last layer only, not per-layer readouts");
    if (spec.energy && !energy_pooled_) {
      for (int l = 0; l < readout_layers; ++l) {
        std::vector<int> dims{H};
        dims.insert(dims.end(), spec.energy_head_dims.begin(), spec.energy_head_dims.end());
        dims.push_back(1);
        const std::string name = readout_layers == 1 ? "heads_NN.0.branch-0.mlp.0"
                                                     : "readouts." + std::to_string(l) + ".mlp.0";
        energy_.push_back(MLP(alloc, dims, spec.act, false, true, name));
      }
    }
    has_graph_heads_ = energy_pooled_;
    for (const auto& hd : spec.heads) has_graph_heads_ = has_graph_heads_ || !hd.node;
    if (has_graph_heads_ && spec.graph_num_sharedlayers > 0) {
      std::vector<int> dims{H};
      for (int k = 0; k < spec.graph_num_sharedlayers; ++k) dims.push_back(spec.graph_dim_sharedlayers);
      shared_ = MLP(alloc, dims, spec.act, true, true, "graph_shared.branch-0");
    }
    if (energy_pooled_) {
      std::vector<int> dims{shared_.layers.empty() ? H : spec.graph_dim_sharedlayers};
      dims.insert(dims.end(), spec.graph_head_dims.begin(), spec.graph_head_dims.end());
      dims.push_back(1);
      energy_.push_back(MLP(alloc, dims, spec.act, false, true, "heads_NN.0.branch-0"));
    }
    const int first = spec.energy ? 1 : 0;
    for (std::size_t k = 0; k < spec.heads.size(); ++k) {
      const auto& hd = spec.heads[k];
      std::vector<int> dims{hd.node ? H : (shared_.layers.empty() ? H : spec.graph_dim_sharedlayers)};
      const auto& hidden = hd.node ? spec.node_head_dims : spec.graph_head_dims;
      dims.insert(dims.end(), hidden.begin(), hidden.end());
      dims.push_back(spec.head_variance ? 2 * hd.dim : hd.dim);  // HydraGNN: head_dim * (1 + var_output)
      heads_.push_back(MLP(alloc, dims, spec.act, false, true,
                           "heads_NN." + std::to_string(first + int(k)) + ".branch-0" + (hd.node ? ".mlp.0" : "")));
    }
  }
  int readout_layers() const { return energy_pooled_ ? 1 : int(energy_.size()); }

  /// hs: node features of the readout layers (the last one only, or one per layer).
  template <class Exec, class S, class T>
  void forward(const Exec& exec, const HeadsSpec& spec, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
               const std::vector<Mat<S, mem_t<Exec>>>& hs, const CVec<double, mem_t<Exec>>& ref, Cache<S, mem_t<Exec>>& c,
               Workspace<mem_t<Exec>>& ws) const {
    using M = mem_t<Exec>;
    using SD = rebind_t<S, double>;
    const int G = b.num_graphs, N = b.num_atoms, H = spec.hidden_dim;
    const std::string lbl = "hydragnn::Heads::forward";
    c.energy_g = ws.template zeroed_vec<SD>(exec, lbl + ".energy", 0, G);
    const Mat<S, M>& hL = hs.back();
    if (has_graph_heads_) {
      c.pooled = ws.template mat<S>(lbl + ".pooled", 0, G, H);
      if (spec.pooling == Pooling::Max) {
        c.pool_arg = ws.template mat<int>(lbl + ".pool_arg", 0, G, H);
        kernels::segment_max<Exec, S>(exec, hL, b.graph_ptr, c.pooled, c.pool_arg);
      } else {
        kernels::segment_sum<Exec, S>(exec, hL, b.graph_ptr, c.pooled, false);
        if (spec.pooling == Pooling::Mean) kernels::scale_by_graph<Exec, S>(exec, b.inv_count, c.pooled);
      }
      c.shared_out = shared_.layers.empty() ? c.pooled : shared_.forward<Exec, S, T>(exec, w, c.pooled, c.shared, ws);
    }
    if (energy_pooled_) {
      c.energy.resize(1);
      c.e_graph = energy_[0].forward<Exec, S, T>(exec, w, c.shared_out, c.energy[0], ws, 0);
      kernels::graph_energy<Exec, S, SD>(exec, c.e_graph, b.graph_ptr, b.species, ref, spec.energy_scale, spec.energy_shift,
                                         c.energy_g);
    } else if (!energy_.empty()) {
      c.energy.resize(energy_.size());
      const std::size_t l0 = hs.size() - energy_.size();
      for (std::size_t l = 0; l < energy_.size(); ++l) {
        Mat<S, M> e = energy_[l].forward<Exec, S, T>(exec, w, hs[l0 + l], c.energy[l], ws, int(l));
        if (l == 0) {
          c.e_atom = ws.template mat<S>(lbl + ".e_atom", 0, N, 1);
          Kokkos::deep_copy(exec, c.e_atom, e);
        } else {
          kernels::add_into<Exec, S>(exec, e, c.e_atom);
        }
      }
      kernels::energy_sum<Exec, S, SD>(exec, c.e_atom, b.graph_ptr, b.species, ref, spec.energy_scale, spec.energy_shift,
                                       c.energy_g);
    }
    c.head_out.clear();
    if (spec.heads.empty()) return;
    c.head.resize(heads_.size());
    for (std::size_t k = 0; k < heads_.size(); ++k) {
      const Mat<S, M>& in = spec.heads[k].node ? hL : c.shared_out;
      c.head_out.push_back(heads_[k].forward<Exec, S, T>(exec, w, in, c.head[k], ws, int(k)));
    }
  }

  /// Given dL/dE_g (Ebar, may be empty) and dL/d(head output) (empty views for unused heads): add
  /// dL/dh of each readout layer into hbars (same layout as hs; zero-initialised by the caller) and
  /// the parameter gradients into g (skipped when g is empty).
  template <class Exec, class S, class T>
  void backward(const Exec& exec, const HeadsSpec& spec, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b, const Cache<S, mem_t<Exec>>& c,
                const Vec<S, mem_t<Exec>>& Ebar, const std::vector<Mat<S, mem_t<Exec>>>& head_bar,
                const std::vector<Mat<S, mem_t<Exec>>>& hbars, const Vec<real_t<S>, mem_t<Exec>>& g, Workspace<mem_t<Exec>>& ws) const {
    using M = mem_t<Exec>;
    const int N = b.num_atoms;
    const std::string lbl = "hydragnn::Heads::backward";
    const Mat<S, M>& hbar = hbars.back();
    Mat<S, M> shared_bar;  // dL/d(shared output) of the graph heads (the pooled energy's first)
    if (energy_pooled_ && Ebar.extent(0) > 0) {
      auto ybar = ws.template mat<S>(lbl + ".e_graph_bar", 0, b.num_graphs, 1);
      kernels::graph_energy_backward<Exec, S>(exec, Ebar, spec.energy_scale, ybar);
      Mat<S, M> inbar = energy_[0].backward<Exec, S, T>(exec, w, c.energy[0], ybar, g, ws, 0);
      shared_bar = ws.template mat<S>(lbl + ".shared_bar", 0, inbar.extent(0), inbar.extent(1));
      Kokkos::deep_copy(exec, shared_bar, inbar);
    } else if (!energy_.empty() && Ebar.extent(0) > 0) {
      auto ebar = ws.template mat<S>(lbl + ".ebar", 0, N, 1);
      kernels::energy_sum_backward<Exec, S>(exec, Ebar, b.atom_graph, spec.energy_scale, ebar);
      const std::size_t l0 = hbars.size() - energy_.size();
      for (std::size_t l = 0; l < energy_.size(); ++l) {
        Mat<S, M> t = energy_[l].backward<Exec, S, T>(exec, w, c.energy[l], ebar, g, ws, int(l));
        kernels::add_into<Exec, S>(exec, t, hbars[l0 + l]);
      }
    }
    for (std::size_t k = 0; k < heads_.size(); ++k) {
      if (k >= head_bar.size() || head_bar[k].extent(0) == 0) continue;
      Mat<S, M> inbar = heads_[k].backward<Exec, S, T>(exec, w, c.head[k], head_bar[k], g, ws, int(k));
      if (spec.heads[k].node) {
        kernels::add_into<Exec, S>(exec, inbar, hbar);
      } else if (shared_bar.extent(0) == 0) {
        shared_bar = ws.template mat<S>(lbl + ".shared_bar", 0, inbar.extent(0), inbar.extent(1));
        Kokkos::deep_copy(exec, shared_bar, inbar);
      } else {
        kernels::add_into<Exec, S>(exec, inbar, shared_bar);
      }
    }
    if (shared_bar.extent(0) > 0) {
      Mat<S, M> pooled_bar = shared_.layers.empty() ? shared_bar : shared_.backward<Exec, S, T>(exec, w, c.shared, shared_bar, g, ws);
      if (spec.pooling == Pooling::Max)
        kernels::segment_max_backward<Exec, S>(exec, pooled_bar, c.pool_arg, b.atom_graph, hbar, true);
      else
        kernels::pool_backward<Exec, S>(exec, pooled_bar, b.atom_graph, b.inv_count, spec.pooling == Pooling::Mean, hbar);
    }
  }

 private:
  bool has_graph_heads_ = false;
  bool energy_pooled_ = false;
  std::vector<MLP> energy_;
  MLP shared_;
  std::vector<MLP> heads_;
};

}  // namespace hydragnn
