// SPDX-License-Identifier: BSD-3-Clause
// Model<T, Conv, Exec>: species embedding -> num_conv_layers x (Conv layer -> feature layer -> stack
// activation) -> heads.
//
//  * Conv is a convolution of the v2 interface (conv/traits.hpp), checked by conv_traits<Conv>.
//  * Node state: scalars h (N x H) and, for ScalarsAndVectors convolutions, vectors v (N x 3 x F,
//    zero at the input); HydraGNN's Base applies the stack activation to h after every layer.
//  * Heads (heads/heads.hpp) read the last layer, or every layer for PerLayer readout. Node heads of
//    type conv (spec.node_conv) are convolutions of the model's type after the trunk
//    (heads/conv_head.hpp), with their own BatchNorms; the model runs them and hands their outputs to
//    the heads.
//  * Every forward/backward is generic in the scalar S (T or Dual<T>); parameters are real T in one
//    flat buffer (named blocks: named_parameters()), parameter gradients are real T in a buffer of the
//    same layout (a dual pass adds only the tangent of its parameter cotangent: param_part in
//    core/dual.hpp); an empty gradient view skips every parameter gradient.
//  * Feature layers (conv_traits<Conv>::batch_norm): PyG BatchNorm after every layer, as HydraGNN's
//    invariant stacks. Batch statistics in training mode (set_training(true); a real forward then
//    records them, update_running_statistics() folds them into the running ones once per step),
//    running statistics otherwise (the default: inference, validation, every loaded checkpoint).
//    The running statistics are buffers (buffers(), named_buffers()), saved with the parameters; the
//    BatchNorms of conv node heads work the same way (their statistics follow the trunk's).
//  * Intermediates live in a Workspace (core/workspace.hpp): a pass allocates nothing once it has grown.
#pragma once

#include <hydragnn/conv/traits.hpp>
#include <hydragnn/heads/conv_head.hpp>
#include <hydragnn/heads/heads.hpp>
#include <hydragnn/kernels/readout.hpp>
#include <hydragnn/model/spec.hpp>
#include <hydragnn/nn/batchnorm.hpp>

#include <algorithm>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace hydragnn {

namespace detail {
/// Whether a conv's layer cache has a geometry_only flag (Model::Forward::geometry_only).
template <class C, class = void>
struct has_geometry_only : std::false_type {};
template <class C>
struct has_geometry_only<C, std::void_t<decltype(std::declval<C&>().geometry_only)>> : std::true_type {};
}  // namespace detail

template <class T, class Conv, class Exec = Kokkos::DefaultExecutionSpace>
class Model {
  static_assert(conv_traits<Conv>::value, "Model: Conv must satisfy the convolution interface");

 public:
  using real_type = T;
  using conv_type = Conv;
  using options_type = typename Conv::options_type;
  using exec_space = Exec;
  using memory_space = mem_t<Exec>;
  using M = memory_space;
  using traits = conv_traits<Conv>;

  template <class S> struct Forward {
    Mat<S, M> r;  ///< E x 3 edge vectors
    typename Conv::template EdgeCache<S, M> edge;
    std::vector<NodeState<S, M>> state;  ///< state[0] = embedding, state[l+1] = after layer l (activated)
    std::vector<Mat<S, M>> pre;          ///< pre[l] = input of layer l's stack activation (after the feature layer)
    std::vector<typename BatchNorm::template Cache<S, M>> norm;  ///< feature layers (batch_norm only)
    std::vector<typename Conv::template LayerCache<S, M>> layer;
    typename ConvNodeHeads<Conv>::template Cache<S, M> node_conv;  ///< conv node heads (spec.node_conv)
    typename Heads::template Cache<S, M> heads;
    Vec<rebind_t<S, double>, M> energy;  ///< G, eV
    std::vector<Mat<S, M>> head_out;     ///< per direct head: G x dim or N x dim
    /// Set by the caller before forward: no parameter gradient will be taken of this pass (forces,
    /// stress, inference), so a layer may keep less for its backward (EGNN). backward refuses one.
    bool geometry_only = false;
  };

  Model() = default;
  explicit Model(const ModelSpec& spec, const options_type& opt = options_type()) : spec_(spec), opt_(opt) {
    spec_.mpnn_type = Conv::name;
    ParamAllocator alloc;
    const int D = spec_.embedding_dim();
    emb_off_ = long(alloc.take(std::size_t(spec.num_species()) * D, 1.0, "embedding.weight", {spec.num_species(), D}));
    conv_ = Conv(alloc, spec_.conv_common(), opt_);
    const int L = conv_.num_layers();
    if (traits::layer_width(conv_, L - 1, spec_.hidden_dim) != spec_.hidden_dim)
      throw std::logic_error(std::string("hydragnn::Model: ") + Conv::name + "'s last layer is " +
                             std::to_string(traits::layer_width(conv_, L - 1, spec_.hidden_dim)) +
                             " wide; the heads read hidden_dim = " + std::to_string(spec_.hidden_dim));
    // BatchNorms: the trunk's feature layers (batch_norm convolutions), then the conv node heads'
    std::vector<std::pair<std::string, const BatchNorm*>> all_norms;
    long n_stats = 0;
    if constexpr (traits::batch_norm) {
      for (int l = 0; l < L; ++l) {
        const int C = traits::layer_width(conv_, l, spec_.hidden_dim);
        norms_.emplace_back(alloc, C, n_stats, "feature_layers." + std::to_string(l));
        n_stats += 2 * C;
      }
      for (int l = 0; l < L; ++l) all_norms.emplace_back("feature_layers." + std::to_string(l), &norms_[std::size_t(l)]);
    }
    trunk_params_ = alloc.size;  // everything before the heads
    if (spec_.node_conv) {
      if (std::string(Conv::name) == "CGCNN")
        throw std::invalid_argument("hydragnn::Model: node heads of type conv are not defined for CGCNN (a CGConv keeps "
                                    "its width; HydraGNN d251f816 raises for them too): use mlp");
      node_convs_ = ConvNodeHeads<Conv>(alloc, spec_, spec_.conv_common(), opt_, n_stats);
      n_stats += long(node_convs_.num_statistics());
      for (const auto& nb : node_convs_.norms()) all_norms.push_back(nb);
    }
    if (n_stats > 0) {
      stats_ = Vec<double, M>("hydragnn::Model::running_statistics", std::size_t(n_stats));
      record_ = Vec<double, M>("hydragnn::Model::batch_statistics", std::size_t(n_stats));
      auto h = Kokkos::create_mirror_view(stats_);
      for (const auto& nb : all_norms) {
        const BatchNorm& bn = *nb.second;
        const std::size_t mean = std::size_t(bn.stats_off), var = mean + std::size_t(bn.channels);
        for (int c = 0; c < bn.channels; ++c) {
          h(mean + std::size_t(c)) = 0.0;  // running_mean
          h(var + std::size_t(c)) = 1.0;   // running_var
        }
        named_buffers_.push_back({nb.first + ".module.running_mean", mean, {bn.channels}});
        named_buffers_.push_back({nb.first + ".module.running_var", var, {bn.channels}});
        named_buffers_.push_back({nb.first + ".module.num_batches_tracked", std::size_t(n_stats), {}});
      }
      Kokkos::deep_copy(stats_, h);
    }
    heads_ = Heads(alloc, spec_, traits::per_layer_readout ? conv_.num_layers() : 1);
    init_ranges_ = alloc.ranges;
    named_ = alloc.named;
    stages_.push_back({{trunk_params_, alloc.size}});
    for (int l = L; l-- > 0;) {
      const std::string conv = spec_.conv_common().layer_name(l) + ".", norm = "feature_layers." + std::to_string(l) + ".";
      std::vector<Block> blocks;
      for (const NamedParam& p : named_)
        if (p.offset < trunk_params_ && (p.name.compare(0, conv.size(), conv) == 0 || p.name.compare(0, norm.size(), norm) == 0))
          blocks.push_back({p.offset, p.offset + p.size()});
      std::sort(blocks.begin(), blocks.end());
      std::vector<Block> merged;
      for (const Block& r : blocks) {
        if (!merged.empty() && merged.back().second == r.first)
          merged.back().second = r.second;
        else
          merged.push_back(r);
      }
      stages_.push_back(merged);
    }
    params_ = Vec<T, M>("hydragnn::Model::params", alloc.size);
    params_t_ = Vec<T, M>("hydragnn::Model::params_transposed", alloc.size);
    {
      Kokkos::View<long* [3], M> shapes("hydragnn::Model::linear_shapes", alloc.linears.size());
      auto h = Kokkos::create_mirror_view(shapes);
      for (std::size_t k = 0; k < alloc.linears.size(); ++k) {
        h(k, 0) = alloc.linears[k].w_off;
        h(k, 1) = alloc.linears[k].in;
        h(k, 2) = alloc.linears[k].out;
      }
      Kokkos::deep_copy(shapes, h);
      linear_shapes_ = shapes;
    }
    ref_ = Vec<double, M>("hydragnn::Model::ref_energy",
                          std::size_t(spec_.num_branches()) * std::max<std::size_t>(1, spec.species.size()));
    set_reference_energies(spec.ref_energy);
  }

  const ModelSpec& spec() const { return spec_; }
  const options_type& options() const { return opt_; }
  std::size_t num_params() const { return params_.extent(0); }
  /// The blocks [begin, end) of the parameter buffer in the order the backward finishes their
  /// gradient: [0] the heads and conv node heads ([num_trunk_params(), num_params())), then [L - l]
  /// trunk layer l's convolution and feature layer (the parameters named <graph_convs>.l. and
  /// feature_layers.l.), l = L-1 .. 0. What no stage holds (the embedding, anything shared between
  /// layers) is final only at the end. tests/test_model.cpp checks that no later part of the backward
  /// writes a stage's block, for every model.
  using Block = std::pair<std::size_t, std::size_t>;
  const std::vector<std::vector<Block>>& gradient_stages() const { return stages_; }
  /// The trunk's parameters (embedding, convolutions, feature layers) are [0, num_trunk_params()).
  std::size_t num_trunk_params() const { return trunk_params_; }
  Vec<T, M> params() const { return params_; }
  const Conv& conv() const { return conv_; }
  /// Message-passing layers between the positions and the energy: the trunk's (GAT builds at least
  /// two), plus a conv node head's hidden and output convolutions when the per-atom energy is one of
  /// its outputs (the receptive field of a potential: sim/potential.hpp).
  int energy_layers() const {
    int n = conv_.num_layers();
    if (spec_.node_conv && spec_.energy && !spec_.energy_pooled) n += int(spec_.branches.front().node_head_dims.size()) + 1;
    return n;
  }
  /// Whether the energy depends on the positions (false for convolutions without edge geometry,
  /// e.g. GIN: their forces and stress are zero).
  bool uses_positions() const { return traits::uses_positions(conv_); }
  /// Named blocks of the parameter buffer (HydraGNN state_dict names where there is a counterpart).
  const std::vector<NamedParam>& named_parameters() const { return named_; }

  /// Feature-layer mode: batch statistics (training) or running statistics (evaluation, the default).
  void set_training(bool on) { training_ = on; }
  bool training() const { return training_; }
  /// The seed of the random masks of the training-mode passes that follow (GAT's attention dropout):
  /// the trainer sets one per step and micro-batch, so the real and dual passes and the backward
  /// of a step see the same masks and a run is repeatable.
  void set_random_seed(std::uint64_t seed) { seed_ = seed; }
  /// Fold the batch statistics recorded by the last training-mode real forward into the running
  /// statistics (momentum 0.1 = torch's, unbiased variance); once per optimizer step. Momentum 1
  /// replaces them by that batch's statistics (calibration). No-op without feature layers or
  /// without a recorded forward.
  void update_running_statistics(const Exec& exec, double momentum = BatchNorm::momentum) {
    if (has_statistics()) {
      if (!recorded_) return;
      kernels::batchnorm_update_running<Exec>(exec, record_, momentum, stats_);
      ++batches_tracked_;
      recorded_ = false;
    }
  }
  /// Data-parallel steps fold the batch statistics of every micro-batch of the global batch, in a
  /// fixed order, on every rank: take_batch_statistics() hands over (and clears) what the last
  /// training-mode forward recorded (empty when nothing was recorded or there are no feature
  /// layers); fold_batch_statistics() folds one such record into the running statistics exactly as
  /// update_running_statistics() folds the model's own.
  std::vector<double> take_batch_statistics() {
    std::vector<double> out;
    if (has_statistics()) {
      if (!recorded_) return out;
      auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), record_);
      out.assign(h.data(), h.data() + h.extent(0));
      recorded_ = false;
    }
    return out;
  }
  void fold_batch_statistics(const Exec& exec, const std::vector<double>& rec, double momentum = BatchNorm::momentum) {
    if (has_statistics()) {
      if (rec.size() != record_.extent(0))
        throw std::invalid_argument("hydragnn::Model::fold_batch_statistics: " + std::to_string(rec.size()) +
                                    " values, the feature layers record " + std::to_string(record_.extent(0)));
      auto h = Kokkos::create_mirror_view(record_);
      for (std::size_t i = 0; i < rec.size(); ++i) h(i) = rec[i];
      Kokkos::deep_copy(exec, record_, h);
      recorded_ = true;
      update_running_statistics(exec, momentum);
    } else {
      (void)exec, (void)momentum;
      if (!rec.empty()) throw std::invalid_argument("hydragnn::Model::fold_batch_statistics: the model has no BatchNorm");
    }
  }
  /// Buffers (not trained): the feature layers' running statistics then num_batches_tracked, as
  /// host doubles (empty without feature layers); named_buffers() names their blocks (HydraGNN
  /// state_dict names; every layer's num_batches_tracked is the one shared count at the end).
  std::vector<double> buffers() const {
    std::vector<double> out;
    if (has_statistics()) {
      auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), stats_);
      out.assign(h.data(), h.data() + h.extent(0));
      out.push_back(double(batches_tracked_));
    }
    return out;
  }
  std::size_t num_buffers() const { return has_statistics() ? stats_.extent(0) + 1 : 0; }
  /// Whether the model has BatchNorms (feature layers or conv node heads), hence running statistics.
  bool has_statistics() const { return stats_.extent(0) > 0; }
  void set_buffers(const std::vector<double>& b) {
    if (b.size() != num_buffers())
      throw std::invalid_argument("hydragnn::Model::set_buffers: " + std::to_string(b.size()) + " values, the " +
                                  Conv::name + " architecture has " + std::to_string(num_buffers()));
    if (has_statistics()) {
      auto h = Kokkos::create_mirror_view(stats_);
      for (std::size_t i = 0; i < h.extent(0); ++i) h(i) = b[i];
      Kokkos::deep_copy(stats_, h);
      batches_tracked_ = long(b.back());
    }
  }
  const std::vector<NamedParam>& named_buffers() const { return named_buffers_; }

  /// Deterministic initialisation from a seed (uniform ranges recorded by the allocator).
  void initialize(std::uint64_t seed) {
    auto h = Kokkos::create_mirror_view(params_);
    std::mt19937_64 rng(seed);
    for (const auto& r : init_ranges_) {
      if (r.constant) {
        for (std::size_t i = 0; i < r.size; ++i) h(r.offset + i) = T(r.value + double(i) * r.step);
        continue;
      }
      std::uniform_real_distribution<double> u(-r.bound, r.bound);
      for (std::size_t i = 0; i < r.size; ++i) h(r.offset + i) = T(u(rng));
    }
    Kokkos::deep_copy(params_, h);
  }
  /// Per-species reference energies (eV), branch-major: ref[k * num_species + s] for branch k (one
  /// branch: one value per species); missing values are 0.
  void set_reference_energies(const std::vector<double>& ref) {
    const std::size_t S = spec_.species.size(), B = std::size_t(spec_.num_branches());
    if (ref.size() > S * B)
      throw std::invalid_argument("hydragnn::Model::set_reference_energies: " + std::to_string(ref.size()) +
                                  " values for " + std::to_string(B) + " branch(es) x " + std::to_string(S) + " species");
    spec_.ref_energy = ref;
    spec_.ref_energy.resize(S * B, 0.0);
    const std::size_t stride = std::max<std::size_t>(1, S);  // the device table has a row per branch, >= 1 wide
    auto h = Kokkos::create_mirror_view(ref_);
    for (std::size_t i = 0; i < h.extent(0); ++i) h(i) = 0.0;
    for (std::size_t k = 0; k < B; ++k)
      for (std::size_t sp = 0; sp < S; ++sp) h(k * stride + sp) = spec_.ref_energy[k * S + sp];
    Kokkos::deep_copy(ref_, h);
  }
  void set_energy_normalisation(double scale, double shift) {
    spec_.energy_scale = scale;
    spec_.energy_shift = shift;
  }

  /// The weights of a pass: p and its per-layer transpose (refreshed here, once per pass).
  Weights<T, M> weights(const Exec& exec) const {
    kernels::transpose_weights<Exec, T>(exec, params_, linear_shapes_, params_t_);
    return Weights<T, M>{params_, params_t_};
  }

  /// Edge vectors r_e = pos[dst] - pos[src] + S_e in double, with optional tangent (E x 3) for a dual pass.
  template <class S>
  Mat<S, M> edge_vectors(const Exec& exec, const Batch<M>& b, Workspace<M>& ws, const Mat<double, M>& tangent = {}) const {
    auto r = ws.template mat<S>("hydragnn::Model::edge_vectors", 0, b.num_edges, 3);
    kernels::edge_vectors<Exec, S>(exec, b.pos, b.shift, b.dst, b.src, tangent, r);
    return r;
  }

  /// Forward pass on given edge vectors.
  template <class S>
  void forward(const Exec& exec, const Weights<T, M>& w, const Batch<M>& b, const Mat<S, M>& r, Forward<S>& f,
               Workspace<M>& ws) const {
    ProfileRegion region("hydragnn::Model::forward");
    if constexpr (traits::needs_triplets)
      if (!b.has_triplets)
        throw std::invalid_argument(std::string("hydragnn::Model: ") + Conv::name +
                                    " needs the batch's triplets (make_batch(..., with_triplets = true))");
    const int N = b.num_atoms, D = spec_.embedding_dim(), L = conv_.num_layers();
    const std::string lbl = "hydragnn::Model::forward";
    f.r = r;
    traits::set_pass(conv_, training_, seed_);
    if (spec_.node_conv) node_convs_.set_pass(training_, seed_);
    conv_.template edge_forward<Exec, S>(exec, b, r, f.edge, ws);
    f.state.assign(L + 1, NodeState<S, M>());
    f.pre.assign(L, Mat<S, M>());
    f.layer.resize(L);
    const bool batch_stats = traits::batch_norm && training_;
    if constexpr (traits::batch_norm) f.norm.resize(L);
    if (training_ && has_statistics() && N < 2)
      throw std::invalid_argument(std::string("hydragnn::Model: ") + Conv::name +
                                  "'s BatchNorm in training mode needs more than one atom in the batch");
    NodeState<S, M>& s0 = f.state[0];
    s0.h = ws.template mat<S>(lbl + ".embedding", 0, N, D);
    kernels::embedding_forward<Exec, S, T>(exec, w.p, emb_off_, b.species, s0.h);
    if constexpr (traits::has_vectors) {
      s0.v = ws.template vec3<S>(lbl + ".v0", 0, N, 3, conv_.vector_channels());
      Kokkos::deep_copy(exec, s0.v, S(0));
    }
    for (int l = 0; l < L; ++l) {
      NodeState<S, M> out;
      if constexpr (detail::has_geometry_only<typename Conv::template LayerCache<S, M>>::value)
        f.layer[l].geometry_only = f.geometry_only;
      conv_.template layer_forward<Exec, S, T>(exec, l, w, b, f.edge, f.state[l], f.layer[l], out, ws);
      if constexpr (traits::batch_norm) {
        // the real pass of a training step records the batch statistics for the running update
        const bool record = batch_stats && std::is_same<S, T>::value;
        out.h = norms_[l].template forward<Exec, S, T>(exec, w, out.h, batch_stats, stats_,
                                                       record ? record_ : Vec<double, M>(), f.norm[l], ws, l);
        if (record) recorded_ = true;
      }
      f.pre[l] = out.h;
      out.h = ws.template mat<S>(lbl + ".activated", l, f.pre[l].extent(0), f.pre[l].extent(1));
      kernels::activation_forward<Exec, S>(exec, spec_.act, f.pre[l], out.h);
      f.state[l + 1] = out;
    }
    std::vector<Mat<S, M>> hs;
    for (int l = 1; l <= L; ++l) hs.push_back(f.state[l].h);
    std::vector<Mat<S, M>> given;  // conv node heads' outputs
    if (spec_.node_conv) {
      const bool record = training_ && std::is_same<S, T>::value;
      given = node_convs_.template forward<Exec, S, T>(exec, w, b, r, f.state[L], training_, stats_,
                                                       record ? record_ : Vec<double, M>(), f.node_conv, ws);
      if (record) recorded_ = true;
    }
    heads_.template forward<Exec, S, T>(exec, spec_, w, b, hs, ref_, f.heads, ws, given);
    f.energy = f.heads.energy_g;
    f.head_out = f.heads.head_out;
  }

  /// Backward: given dL/dE_g (Ebar, G; may be empty) and dL/d(head output) (head_bar, empty views for
  /// unused heads), accumulate dL/dparams into g (nothing when g is empty) and return dL/dr (E x 3);
  /// with geometry = false nothing that only feeds dL/dr is computed and an empty view is returned.
  /// stage_done (optional) is called with k = 0, 1, .. L as the blocks gradient_stages()[k] of g become
  /// final (enqueued on exec): the trainer starts summing them over the ranks while the rest of the
  /// backward runs (train/trainer.hpp, DataParallelStep).
  template <class S>
  Mat<S, M> backward(const Exec& exec, const Weights<T, M>& w, const Batch<M>& b, const Forward<S>& f,
                     const Vec<S, M>& Ebar, const std::vector<Mat<S, M>>& head_bar, const Vec<real_t<S>, M>& g,
                     Workspace<M>& ws, bool geometry = true, const std::function<void(int)>* stage_done = nullptr) const {
    ProfileRegion region("hydragnn::Model::backward");
    if (f.geometry_only && g.extent(0) > 0)
      throw std::logic_error("hydragnn::Model::backward: a parameter gradient of a forward pass made with "
                             "geometry_only (it keeps only what forces and stress need)");
    const int L = conv_.num_layers();
    const std::string lbl = "hydragnn::Model::backward";
    // dL/dh of every layer's (activated) output: the heads write into them
    std::vector<Mat<S, M>> hbars;
    for (int l = 1; l <= L; ++l)
      hbars.push_back(ws.template zeroed_mat<S>(exec, lbl + ".h_bar", l, f.state[l].h.extent(0), f.state[l].h.extent(1)));
    std::vector<Mat<S, M>> given_bar;  // dL/d(conv node heads' outputs)
    heads_.template backward<Exec, S, T>(exec, spec_, w, b, f.heads, Ebar, head_bar, hbars, g, ws,
                                         spec_.node_conv ? &given_bar : nullptr);
    const Mat<S, M> rbar = geometry ? ws.template zeroed_mat<S>(exec, lbl + ".r_bar", 0, b.num_edges, 3) : Mat<S, M>();
    NodeState<S, M> head_in_bar;  // dL/d(trunk output) through the conv node heads
    if (spec_.node_conv) {
      head_in_bar = node_convs_.template backward<Exec, S, T>(exec, w, b, f.node_conv, given_bar, g, rbar, ws);
      if (head_in_bar.h.extent(0) > 0) kernels::add_into<Exec, S>(exec, head_in_bar.h, hbars[L - 1]);
    }
    const bool report = stage_done && g.extent(0) > 0;
    if (report) (*stage_done)(0);  // heads and conv node heads: nothing below writes them
    typename Conv::template EdgeGrad<S, M> eg;  // empty views unless the geometry gradient is wanted
    if (geometry) conv_.template edge_grad_init<Exec, S>(exec, b, eg, ws);
    NodeState<S, M> out_bar;
    out_bar.h = hbars[L - 1];
    if constexpr (traits::has_vectors) {
      out_bar.v = ws.template vec3<S>(lbl + ".v_bar", 0, f.state[L].v.extent(0), 3, f.state[L].v.extent(2));
      if (head_in_bar.v.extent(0) > 0)
        Kokkos::deep_copy(exec, out_bar.v, head_in_bar.v);
      else
        Kokkos::deep_copy(exec, out_bar.v, S(0));
    }
    for (int l = L; l-- > 0;) {
      // stack activation
      auto pre_bar = ws.template mat<S>(lbl + ".pre_bar", l, f.pre[l].extent(0), f.pre[l].extent(1));
      kernels::activation_backward<Exec, S>(exec, spec_.act, f.pre[l], out_bar.h, pre_bar);
      NodeState<S, M> ob = out_bar;
      ob.h = pre_bar;
      if constexpr (traits::batch_norm) ob.h = norms_[l].template backward<Exec, S, T>(exec, w, f.norm[l], pre_bar, g, ws, l);
      NodeState<S, M> in_bar;
      conv_.template layer_backward<Exec, S, T>(exec, l, w, b, f.edge, f.state[l], f.layer[l], ob, in_bar, g, eg, ws);
      if (l > 0) kernels::add_into<Exec, S>(exec, in_bar.h, hbars[l - 1]);  // per-layer readouts/heads of layer l-1
      out_bar = in_bar;
      if (l > 0) out_bar.h = hbars[l - 1];
      if (report) (*stage_done)(L - l);  // layer l's convolution and feature layer
    }
    if (g.extent(0) > 0) kernels::embedding_backward<Exec, S>(exec, out_bar.h, b.species_perm, b.species_ptr, emb_off_, g);
    if (!geometry) return Mat<S, M>();
    conv_.template edge_backward<Exec, S>(exec, b, f.r, f.edge, eg, rbar, ws);
    return rbar;
  }

 private:
  ModelSpec spec_;
  options_type opt_;
  long emb_off_ = 0;
  std::size_t trunk_params_ = 0;
  Conv conv_;
  std::vector<BatchNorm> norms_;  ///< feature layers (batch_norm only)
  ConvNodeHeads<Conv> node_convs_;  ///< node heads of type conv (spec.node_conv)
  Vec<double, M> stats_;          ///< running mean/var per BatchNorm ([mean C | var C]): feature layers, then conv node heads
  Vec<double, M> record_;         ///< batch statistics of the last training-mode real forward (same layout)
  long batches_tracked_ = 0;
  bool training_ = false;
  std::uint64_t seed_ = 0;  ///< random masks of training-mode passes (set_random_seed)
  mutable bool recorded_ = false;  ///< record_ holds statistics not yet folded in
  std::vector<NamedParam> named_buffers_;
  Heads heads_;
  std::vector<ParamAllocator::Range> init_ranges_;
  std::vector<std::vector<Block>> stages_;  ///< gradient_stages()
  std::vector<NamedParam> named_;
  Vec<T, M> params_, params_t_;
  Kokkos::View<const long* [3], M> linear_shapes_;
  Vec<double, M> ref_;
};

}  // namespace hydragnn
