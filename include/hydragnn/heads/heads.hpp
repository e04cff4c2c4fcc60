// SPDX-License-Identifier: BSD-3-Clause
// Output heads on the node features of the trunk:
//  * the conservative energy head, one of
//    - per atom (HydraGNN's node head "mlp" named energy): an MLP e_i,
//      E_g = sum_{i in g} (scale e_i + shift + ref[Z_i]), accumulated in double;
//    - pooled (HydraGNN's graph head named energy, energy_pooled): pooling -> the graph heads' shared
//      MLP -> an MLP y_g, E_g = scale y_g + sum_{i in g} (shift + ref[Z_i]);
//  * direct graph heads: pooling (mean | sum | max) -> shared MLP -> per-head MLP;
//  * direct node heads: per-head MLP on every atom.
// Node heads of type conv (HeadsSpec::node_conv) are convolutions of the model's type
// (heads/conv_head.hpp, run by the model): here the per-atom energy and the direct node heads then
// take those given outputs (forward's `given`) and hand back their cotangents (backward's `given_bar`).
// Per-layer readout (conv::PerLayer): one energy MLP per layer, e_i = sum_l e_i^l.
// Branches (HydraGNN's multi-dataset heads, output_heads.{graph,node} as lists of {"type": "branch-k",
// "architecture": ...}): every head above exists once per branch, with the branch's own widths; the
// structures of branch k (Structure::branch) go through branch k's heads only and the trunk sees all.
// A batch groups its graphs by branch (Batch::branch_graph_ptr), so branch k's heads run on one row
// range of the node features (atoms) and of the pooled features (graphs): no gather, and the
// parameters of a branch get exactly zero gradient from the structures of another. Each branch has
// its own per-species reference energies (ref: branch-major, branches x species).
#pragma once

#include <hydragnn/kernels/readout.hpp>
#include <hydragnn/kernels/segment.hpp>
#include <hydragnn/core/batch.hpp>
#include <hydragnn/nn/mlp.hpp>

#include <stdexcept>
#include <vector>

namespace hydragnn {

enum class Pooling { Mean, Sum, Max };

/// One head branch: the layer widths of its heads (HydraGNN: output_heads.{graph,node}[k].architecture).
struct BranchSpec {
  std::string name = "branch-0";               ///< HydraGNN's "type" (parameter names heads_NN.<k>.<name>)
  std::vector<int> energy_head_dims{32, 32};   ///< per-atom energy MLP (the node heads' dim_headlayers)
  int graph_num_sharedlayers = 1, graph_dim_sharedlayers = 32;
  std::vector<int> graph_head_dims{32, 32};
  std::vector<int> node_head_dims{32, 32};
};

/// What the heads are built from (ModelSpec, model/spec.hpp, extends it).
struct HeadsSpec {
  int hidden_dim = 64;
  Activation act = Activation::SiLU;  ///< stack activation (also between head layers)
  Pooling pooling = Pooling::Mean;

  bool energy = true;                 ///< conservative energy head (forces and stress are its derivatives)
  bool energy_pooled = false;         ///< the energy is a graph head (pooling -> shared -> MLP), not a per-atom sum
  std::vector<BranchSpec> branches{BranchSpec{}};  ///< never empty
  std::vector<HeadDef> heads;         ///< direct heads (every branch has each)
  bool head_variance = false;         ///< GaussianNLL: each direct head also outputs dim values s (variance s^2)
  int num_nodes = 0;                  ///< > 0: node heads and the per-atom energy are mlp_per_node for structures of this many atoms
  bool node_conv = false;             ///< node heads of type conv: the per-atom energy and the direct node heads are
                                      ///< convolution stacks the model runs (heads/conv_head.hpp); Heads takes their outputs

  double energy_scale = 1.0;          ///< per-atom network output is multiplied by this (eV)
  double energy_shift = 0.0;          ///< per-atom constant added (eV)

  int num_branches() const { return int(branches.size()); }
  int branch_index(const std::string& name) const {
    for (std::size_t k = 0; k < branches.size(); ++k)
      if (branches[k].name == name) return int(k);
    return -1;
  }
  /// The branch a user names (empty: the first); -1 when the model has no such branch.
  int chosen_branch(const std::string& name) const { return name.empty() ? 0 : branch_index(name); }
  /// The branches' names, comma-separated (error messages).
  std::string branch_list() const {
    std::string names;
    for (const auto& b : branches) names += (names.empty() ? "" : ", ") + b.name;
    return names;
  }
};

/// The network of a node head (HydraGNN's MLPNode): one MLP for every atom ("mlp"), or, for structures
/// that all have num_nodes atoms, one MLP per atom slot ("mlp_per_node": atom i of every structure
/// through MLP i, parameters <name>.mlp.<i>). Also the plain MLP of a graph head (num_nodes 0).
class NodeMLP {
 public:
  template <class S, class M>
  struct Cache {
    std::vector<typename MLP::template Cache<S, M>> mlp;  ///< one per MLP
  };

  NodeMLP() = default;
  /// single_name: the parameter name of the one MLP; per_node_prefix: MLP i is <prefix>.<i>.
  NodeMLP(ParamAllocator& alloc, const std::vector<int>& dims, Activation act, int num_nodes,
          const std::string& single_name, const std::string& per_node_prefix)
      : label_("hydragnn::NodeMLP::" + per_node_prefix) {
    if (num_nodes <= 0) {
      mlps_.push_back(MLP(alloc, dims, act, false, true, single_name));
      return;
    }
    for (int i = 0; i < num_nodes; ++i)
      mlps_.push_back(MLP(alloc, dims, act, false, true, per_node_prefix + "." + std::to_string(i)));
    per_node_ = true;
  }
  bool per_node() const { return per_node_; }

  /// Y = net(X) (X: the rows of whole structures, atom-major); a workspace view.
  template <class Exec, class S, class T>
  Mat<S, mem_t<Exec>> forward(const Exec& exec, const Weights<T, mem_t<Exec>>& w, const Mat<S, mem_t<Exec>>& X,
                              Cache<S, mem_t<Exec>>& c, Workspace<mem_t<Exec>>& ws, int slot) const {
    using M = mem_t<Exec>;
    c.mlp.resize(mlps_.size());
    if (!per_node_) return mlps_[0].forward<Exec, S, T>(exec, w, X, c.mlp[0], ws, slot);
    const long n = long(mlps_.size()), rows = long(X.extent(0)), G = rows / n;
    if (rows % n != 0)
      throw std::invalid_argument("hydragnn::NodeMLP: mlp_per_node has " + std::to_string(n) + " atom slots; " +
                                  std::to_string(rows) + " atoms are not whole structures of that size");
    Mat<S, M> Y = ws.template mat<S>(label_ + ".out", 0, std::size_t(rows), std::size_t(mlps_[0].out_dim()));
    for (long i = 0; i < n; ++i) {
      Mat<S, M> Xi = ws.template mat<S>(label_ + ".in", int(i), std::size_t(G), X.extent(1));
      kernels::gather_strided_rows<Exec, S>(exec, X, i, n, Xi);
      Mat<S, M> Yi = mlps_[std::size_t(i)].forward<Exec, S, T>(exec, w, Xi, c.mlp[std::size_t(i)], ws, 0);
      kernels::scatter_strided_rows<Exec, S>(exec, Yi, i, n, Y, false);
    }
    return Y;
  }

  /// Given Ybar: parameter gradients into g (skipped when empty); returns Xbar (a workspace view).
  template <class Exec, class S, class T>
  Mat<S, mem_t<Exec>> backward(const Exec& exec, const Weights<T, mem_t<Exec>>& w, const Cache<S, mem_t<Exec>>& c,
                               const Mat<S, mem_t<Exec>>& Ybar, const Vec<real_t<S>, mem_t<Exec>>& g,
                               Workspace<mem_t<Exec>>& ws, int slot) const {
    using M = mem_t<Exec>;
    if (!per_node_) return mlps_[0].backward<Exec, S, T>(exec, w, c.mlp[0], Ybar, g, ws, slot);
    const long n = long(mlps_.size()), rows = long(Ybar.extent(0)), G = rows / n;
    Mat<S, M> Xbar = ws.template mat<S>(label_ + ".in_bar", 0, std::size_t(rows), std::size_t(mlps_[0].in_dim()));
    for (long i = 0; i < n; ++i) {
      Mat<S, M> Ybar_i = ws.template mat<S>(label_ + ".out_bar", 0, std::size_t(G), Ybar.extent(1));
      kernels::gather_strided_rows<Exec, S>(exec, Ybar, i, n, Ybar_i);
      Mat<S, M> Xbar_i = mlps_[std::size_t(i)].backward<Exec, S, T>(exec, w, c.mlp[std::size_t(i)], Ybar_i, g, ws, 0);
      kernels::scatter_strided_rows<Exec, S>(exec, Xbar_i, i, n, Xbar, false);  // every row once
    }
    return Xbar;
  }

 private:
  std::vector<MLP> mlps_;
  bool per_node_ = false;
  std::string label_;
};

/// Rows of branch k in a batch: graphs [g0, g1), atoms [a0, a1).
struct BranchRows {
  int g0 = 0, g1 = 0, a0 = 0, a1 = 0;
  bool empty() const { return g1 == g0; }
};

class Heads {
 public:
  template <class S, class M>
  struct BranchCache {
    std::vector<typename NodeMLP::template Cache<S, M>> energy;  ///< one per readout layer (pooled: one)
    typename MLP::template Cache<S, M> shared;
    Mat<S, M> shared_out;                                        ///< G_k x (shared width or H)
    Mat<S, M> e_graph;                                           ///< G_k x 1 (pooled energy head)
    std::vector<typename NodeMLP::template Cache<S, M>> head;    ///< per direct head
    std::vector<Mat<S, M>> head_out;                         ///< per direct head: G_k x dim or N_k x dim
  };
  template <class S, class M>
  struct Cache {
    std::vector<BranchRows> rows;                  ///< per branch
    std::vector<BranchCache<S, M>> branch;         ///< per branch (unused for a branch without rows)
    Mat<S, M> e_atom;                              ///< N x 1 per-atom network energies (per-atom energy head)
    Vec<rebind_t<S, double>, M> energy_g;          ///< G, eV
    Mat<S, M> pooled;                              ///< G x H
    Mat<int, M> pool_arg;
    std::vector<Mat<S, M>> head_out;               ///< per direct head: G x dim or N x dim
  };

  Heads() = default;
  /// readout_layers: 1 (last layer) or num_conv_layers (per-layer readout).
  Heads(ParamAllocator& alloc, const HeadsSpec& spec, int readout_layers) {
    const int H = spec.hidden_dim;
    const int B = spec.num_branches();
    if (B < 1) throw std::invalid_argument("hydragnn::Heads: at least one head branch");
    if (spec.num_nodes < 0)
      throw std::invalid_argument("hydragnn::Heads: mlp_per_node needs the atoms per structure (HeadsSpec::num_nodes)");
    energy_pooled_ = spec.energy && spec.energy_pooled;
    given_ = spec.node_conv;
    atom_energy_ = spec.energy && !energy_pooled_;
    if (given_ && (B != 1 || readout_layers != 1))
      throw std::invalid_argument("hydragnn::Heads: node heads of type conv need one head branch and last-layer readout");
    if (energy_pooled_ && readout_layers != 1)
      throw std::invalid_argument("hydragnn::Heads: a pooled energy head reads the last layer only, not per-layer readouts");
    has_graph_heads_ = energy_pooled_;
    for (const auto& hd : spec.heads) has_graph_heads_ = has_graph_heads_ || !hd.node;
    const int first = spec.energy ? 1 : 0;
    branches_.resize(std::size_t(B));
    for (int k = 0; k < B; ++k) {  // branch-major: one branch's heads are one block of parameters
      const BranchSpec& bs = spec.branches[std::size_t(k)];
      Branch& br = branches_[std::size_t(k)];
      if (atom_energy_ && !given_) {
        for (int l = 0; l < readout_layers; ++l) {
          std::vector<int> dims{H};
          dims.insert(dims.end(), bs.energy_head_dims.begin(), bs.energy_head_dims.end());
          dims.push_back(1);
          const std::string name = readout_layers == 1 ? "heads_NN.0." + bs.name + ".mlp.0"
                                   : B == 1 ? "readouts." + std::to_string(l) + ".mlp.0"
                                            : "readouts." + std::to_string(l) + "." + bs.name + ".mlp.0";
          br.energy.push_back(NodeMLP(alloc, dims, spec.act, spec.num_nodes, name, name.substr(0, name.size() - 2)));
        }
      }
      if (has_graph_heads_ && bs.graph_num_sharedlayers > 0) {
        std::vector<int> dims{H};
        for (int s = 0; s < bs.graph_num_sharedlayers; ++s) dims.push_back(bs.graph_dim_sharedlayers);
        br.shared = MLP(alloc, dims, spec.act, true, true, "graph_shared." + bs.name);
      }
      const int graph_in = br.shared.layers.empty() ? H : bs.graph_dim_sharedlayers;
      if (energy_pooled_) {
        std::vector<int> dims{graph_in};
        dims.insert(dims.end(), bs.graph_head_dims.begin(), bs.graph_head_dims.end());
        dims.push_back(1);
        br.energy.push_back(NodeMLP(alloc, dims, spec.act, 0, "heads_NN.0." + bs.name, "heads_NN.0." + bs.name));
      }
      for (std::size_t h = 0; h < spec.heads.size(); ++h) {
        const auto& hd = spec.heads[h];
        std::vector<int> dims{hd.node ? H : graph_in};
        const auto& hidden = hd.node ? bs.node_head_dims : bs.graph_head_dims;
        dims.insert(dims.end(), hidden.begin(), hidden.end());
        dims.push_back(spec.head_variance ? 2 * hd.dim : hd.dim);  // HydraGNN: head_dim * (1 + var_output)
        const std::string name = "heads_NN." + std::to_string(first + int(h)) + "." + bs.name;
        if (hd.node && given_)
          br.heads.push_back(NodeMLP());  // a convolution stack of the model (conv_head.hpp)
        else
          br.heads.push_back(hd.node ? NodeMLP(alloc, dims, spec.act, spec.num_nodes, name + ".mlp.0", name + ".mlp")
                                     : NodeMLP(alloc, dims, spec.act, 0, name, name));
      }
    }
  }
  int readout_layers() const { return energy_pooled_ || given_ ? 1 : int(branches_.front().energy.size()); }

  /// The row ranges of every branch in batch b (all rows in branch 0 when b has no branch table).
  template <class M>
  std::vector<BranchRows> rows(const Batch<M>& b) const {
    std::vector<BranchRows> r(branches_.size());
    if (b.branch_graph_ptr.empty()) {
      r[0] = BranchRows{0, b.num_graphs, 0, b.num_atoms};
      return r;
    }
    const std::size_t K = b.branch_graph_ptr.size() - 1;
    if (K > branches_.size())
      throw std::invalid_argument("hydragnn::Heads: the batch holds structures of head branch " + std::to_string(K - 1) +
                                  "; the model has " + std::to_string(branches_.size()) + " branch(es)");
    for (std::size_t k = 0; k < K; ++k)
      r[k] = BranchRows{b.branch_graph_ptr[k], b.branch_graph_ptr[k + 1], b.branch_atom_ptr[k], b.branch_atom_ptr[k + 1]};
    for (std::size_t k = K; k < r.size(); ++k) r[k] = BranchRows{b.num_graphs, b.num_graphs, b.num_atoms, b.num_atoms};
    return r;
  }

  /// hs: node features of the readout layers (the last one only, or one per layer); ref: reference
  /// energies, branches x species.
  template <class Exec, class S, class T>
  void forward(const Exec& exec, const HeadsSpec& spec, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
               const std::vector<Mat<S, mem_t<Exec>>>& hs, const CVec<double, mem_t<Exec>>& ref, Cache<S, mem_t<Exec>>& c,
               Workspace<mem_t<Exec>>& ws, const std::vector<Mat<S, mem_t<Exec>>>& given = {}) const {
    using M = mem_t<Exec>;
    using SD = rebind_t<S, double>;
    const int G = b.num_graphs, N = b.num_atoms, H = spec.hidden_dim;
    const int B = int(branches_.size()), NS = int(ref.extent(0)) / B;
    const bool one = B == 1;
    const std::string lbl = "hydragnn::Heads::forward";
    c.rows = rows(b);
    c.branch.resize(branches_.size());
    if (spec.num_nodes > 0)
      for (std::size_t g = 0; g < b.natoms.size(); ++g)
        if (b.natoms[g] != spec.num_nodes)
          throw std::invalid_argument("hydragnn::Heads: the node heads are mlp_per_node for structures of " +
                                      std::to_string(spec.num_nodes) + " atoms; structure " + std::to_string(g) +
                                      " of the batch has " + std::to_string(b.natoms[g]));
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
    }
    const bool atom_energy = atom_energy_;
    if (given_ && given.size() != num_given(spec))
      throw std::invalid_argument("hydragnn::Heads::forward: " + std::to_string(given.size()) +
                                  " node outputs given, the conv node heads have " + std::to_string(num_given(spec)));
    if (atom_energy && !one) c.e_atom = ws.template mat<S>(lbl + ".e_atom", 0, N, 1);
    c.head_out.assign(spec.heads.size(), Mat<S, M>());
    if (!one)
      for (std::size_t h = 0; h < spec.heads.size(); ++h) {
        const int rows_h = spec.heads[h].node ? N : G;
        const int cols = spec.head_variance ? 2 * spec.heads[h].dim : spec.heads[h].dim;
        c.head_out[h] = ws.template mat<S>(lbl + ".head_out", int(h), rows_h, cols);  // every row is in one branch
      }
    for (int k = 0; k < B; ++k) {
      const BranchRows& r = c.rows[std::size_t(k)];
      if (r.empty()) continue;
      const Branch& br = branches_[std::size_t(k)];
      BranchCache<S, M>& bc = c.branch[std::size_t(k)];
      const auto gr = Kokkos::make_pair(r.g0, r.g1);
      const auto ar = Kokkos::make_pair(r.a0, r.a1);
      const CVec<double, M> ref_k = Kokkos::subview(ref, Kokkos::make_pair(k * NS, (k + 1) * NS));
      const CVec<int, M> gptr_k = Kokkos::subview(b.graph_ptr, Kokkos::make_pair(r.g0, r.g1 + 1));
      const Vec<SD, M> energy_k = Kokkos::subview(c.energy_g, gr);
      if (has_graph_heads_) {
        const Mat<S, M> pooled_k = Kokkos::subview(c.pooled, gr, Kokkos::ALL);
        bc.shared_out = br.shared.layers.empty() ? pooled_k : br.shared.forward<Exec, S, T>(exec, w, pooled_k, bc.shared, ws);
      }
      if (energy_pooled_) {
        bc.energy.resize(1);
        bc.e_graph = br.energy[0].forward<Exec, S, T>(exec, w, bc.shared_out, bc.energy[0], ws, 0);
        kernels::graph_energy<Exec, S, SD>(exec, bc.e_graph, gptr_k, b.species, ref_k, spec.energy_scale,
                                           spec.energy_shift, energy_k);
      } else if (atom_energy && given_) {
        c.e_atom = given[0];  // one branch
        kernels::energy_sum<Exec, S, SD>(exec, c.e_atom, gptr_k, b.species, ref_k, spec.energy_scale, spec.energy_shift,
                                         energy_k);
      } else if (atom_energy) {
        bc.energy.resize(br.energy.size());
        const std::size_t l0 = hs.size() - br.energy.size();
        Mat<S, M> e_k;  // N_k x 1
        for (std::size_t l = 0; l < br.energy.size(); ++l) {
          const Mat<S, M> h_k = Kokkos::subview(hs[l0 + l], ar, Kokkos::ALL);
          Mat<S, M> e = br.energy[l].forward<Exec, S, T>(exec, w, h_k, bc.energy[l], ws, int(l));
          if (l == 0) {
            e_k = one ? ws.template mat<S>(lbl + ".e_atom", 0, N, 1) : Mat<S, M>(Kokkos::subview(c.e_atom, ar, Kokkos::ALL));
            Kokkos::deep_copy(exec, e_k, e);
          } else {
            kernels::add_into<Exec, S>(exec, e, e_k);
          }
        }
        if (one) c.e_atom = e_k;
        kernels::energy_sum<Exec, S, SD>(exec, c.e_atom, gptr_k, b.species, ref_k, spec.energy_scale, spec.energy_shift,
                                         energy_k);
      }
      bc.head.resize(br.heads.size());
      bc.head_out.resize(br.heads.size());
      for (std::size_t h = 0; h < br.heads.size(); ++h) {
        const Mat<S, M> in = spec.heads[h].node ? Mat<S, M>(Kokkos::subview(hL, ar, Kokkos::ALL)) : bc.shared_out;
        if (given_ && spec.heads[h].node)
          bc.head_out[h] = given[given_index(spec, h)];
        else
          bc.head_out[h] = br.heads[h].forward<Exec, S, T>(exec, w, in, bc.head[h], ws, int(h));
        if (one)
          c.head_out[h] = bc.head_out[h];
        else
          Kokkos::deep_copy(exec, Kokkos::subview(c.head_out[h], spec.heads[h].node ? ar : gr, Kokkos::ALL), bc.head_out[h]);
      }
    }
  }

  /// Given dL/dE_g (Ebar, may be empty) and dL/d(head output) (empty views for unused heads): add
  /// dL/dh of each readout layer into hbars (same layout as hs; zero-initialised by the caller) and
  /// the parameter gradients into g (skipped when g is empty).
  template <class Exec, class S, class T>
  void backward(const Exec& exec, const HeadsSpec& spec, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b, const Cache<S, mem_t<Exec>>& c,
                const Vec<S, mem_t<Exec>>& Ebar, const std::vector<Mat<S, mem_t<Exec>>>& head_bar,
                const std::vector<Mat<S, mem_t<Exec>>>& hbars, const Vec<real_t<S>, mem_t<Exec>>& g, Workspace<mem_t<Exec>>& ws,
                std::vector<Mat<S, mem_t<Exec>>>* given_bar = nullptr) const {
    using M = mem_t<Exec>;
    const int N = b.num_atoms, G = b.num_graphs, H = spec.hidden_dim;
    const int B = int(branches_.size());
    const bool one = B == 1;
    const std::string lbl = "hydragnn::Heads::backward";
    const Mat<S, M>& hbar = hbars.back();
    const bool energy_bar = (atom_energy_ || energy_pooled_) && Ebar.extent(0) > 0;
    if (given_) {
      if (!given_bar) throw std::invalid_argument("hydragnn::Heads::backward: conv node heads need given_bar");
      given_bar->assign(num_given(spec), Mat<S, M>());
    }
    Mat<S, M> ebar;  // N x 1 (per-atom energy) or G x 1 (pooled energy)
    if (energy_bar && energy_pooled_) {
      ebar = ws.template mat<S>(lbl + ".e_graph_bar", 0, G, 1);
      kernels::graph_energy_backward<Exec, S>(exec, Ebar, spec.energy_scale, ebar);
    } else if (energy_bar) {
      ebar = ws.template mat<S>(lbl + ".ebar", 0, N, 1);
      kernels::energy_sum_backward<Exec, S>(exec, Ebar, b.atom_graph, spec.energy_scale, ebar);
    }
    Mat<S, M> pooled_bar;  // G x H, dL/d(pooled features) of every branch's graph heads
    for (int k = 0; k < B; ++k) {
      const BranchRows& r = c.rows[std::size_t(k)];
      if (r.empty()) continue;
      const Branch& br = branches_[std::size_t(k)];
      const BranchCache<S, M>& bc = c.branch[std::size_t(k)];
      const auto gr = Kokkos::make_pair(r.g0, r.g1);
      const auto ar = Kokkos::make_pair(r.a0, r.a1);
      Mat<S, M> shared_bar;  // dL/d(shared output) of the branch's graph heads (the pooled energy's first)
      if (energy_bar && energy_pooled_) {
        const Mat<S, M> ybar = Kokkos::subview(ebar, gr, Kokkos::ALL);
        Mat<S, M> inbar = br.energy[0].backward<Exec, S, T>(exec, w, bc.energy[0], ybar, g, ws, 0);
        shared_bar = ws.template mat<S>(lbl + ".shared_bar", k, inbar.extent(0), inbar.extent(1));
        Kokkos::deep_copy(exec, shared_bar, inbar);
      } else if (energy_bar && given_) {
        (*given_bar)[0] = ebar;  // one branch
      } else if (energy_bar) {
        const Mat<S, M> ebar_k = Kokkos::subview(ebar, ar, Kokkos::ALL);
        const std::size_t l0 = hbars.size() - br.energy.size();
        for (std::size_t l = 0; l < br.energy.size(); ++l) {
          Mat<S, M> t = br.energy[l].backward<Exec, S, T>(exec, w, bc.energy[l], ebar_k, g, ws, int(l));
          kernels::add_into<Exec, S>(exec, t, Mat<S, M>(Kokkos::subview(hbars[l0 + l], ar, Kokkos::ALL)));
        }
      }
      for (std::size_t h = 0; h < br.heads.size(); ++h) {
        if (h >= head_bar.size() || head_bar[h].extent(0) == 0) continue;
        const bool node = spec.heads[h].node;
        if (node && given_) {
          (*given_bar)[given_index(spec, h)] = head_bar[h];  // one branch
          continue;
        }
        const Mat<S, M> bar_k = Kokkos::subview(head_bar[h], node ? ar : gr, Kokkos::ALL);
        Mat<S, M> inbar = br.heads[h].backward<Exec, S, T>(exec, w, bc.head[h], bar_k, g, ws, int(h));
        if (node) {
          kernels::add_into<Exec, S>(exec, inbar, Mat<S, M>(Kokkos::subview(hbar, ar, Kokkos::ALL)));
        } else if (shared_bar.extent(0) == 0) {
          shared_bar = ws.template mat<S>(lbl + ".shared_bar", k, inbar.extent(0), inbar.extent(1));
          Kokkos::deep_copy(exec, shared_bar, inbar);
        } else {
          kernels::add_into<Exec, S>(exec, inbar, shared_bar);
        }
      }
      if (shared_bar.extent(0) == 0) continue;
      Mat<S, M> pbar_k = br.shared.layers.empty() ? shared_bar : br.shared.backward<Exec, S, T>(exec, w, bc.shared, shared_bar, g, ws);
      if (one) {
        pooled_bar = pbar_k;
      } else {
        if (pooled_bar.extent(0) == 0) pooled_bar = ws.template zeroed_mat<S>(exec, lbl + ".pooled_bar", 0, G, H);
        Kokkos::deep_copy(exec, Kokkos::subview(pooled_bar, gr, Kokkos::ALL), pbar_k);
      }
    }
    if (pooled_bar.extent(0) > 0) {
      if (spec.pooling == Pooling::Max)
        kernels::segment_max_backward<Exec, S>(exec, pooled_bar, c.pool_arg, b.atom_graph, hbar, true);
      else
        kernels::pool_backward<Exec, S>(exec, pooled_bar, b.atom_graph, b.inv_count, spec.pooling == Pooling::Mean, hbar);
    }
  }

  /// Conv node heads: the number of given node outputs (the per-atom energy, then the direct node heads).
  std::size_t num_given(const HeadsSpec& spec) const { return given_index(spec, spec.heads.size()); }
  /// The index of direct node head h among the given node outputs (h = heads.size(): their count).
  std::size_t given_index(const HeadsSpec& spec, std::size_t h) const {
    std::size_t n = atom_energy_ ? 1 : 0;
    for (std::size_t k = 0; k < h; ++k) n += spec.heads[k].node ? 1 : 0;
    return n;
  }

 private:
  struct Branch {
    std::vector<NodeMLP> energy;  ///< per-atom: one per readout layer; pooled: one (a graph MLP)
    MLP shared;
    std::vector<NodeMLP> heads;   ///< per direct head
  };
  bool has_graph_heads_ = false;
  bool energy_pooled_ = false;
  bool atom_energy_ = false;  ///< per-atom energy (not pooled)
  bool given_ = false;        ///< node heads of type conv: their outputs are given
  std::vector<Branch> branches_;
};

}  // namespace hydragnn
