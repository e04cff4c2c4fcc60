// SPDX-License-Identifier: BSD-3-Clause
// Node heads of type "conv" (HydraGNN's Base._init_node_conv and the conv branch of Base.forward,
// commit d251f816): the node outputs are convolutions of the model's own type on the batch's graph,
// each followed by a PyG BatchNorm and the stack activation:
//
//   hidden (shared by every node output):  x_0 = trunk output (h, and v for vector convolutions)
//       x_{i+1} = act(BN_i(conv_i(x_i)))     conv_0: hidden_dim -> d_0, conv_i: d_{i-1} -> d_i
//   output j (the per-atom energy first, then the direct node heads in order):
//       y_j = act(BN_j(conv_j(x_n)))         conv_j: d_{n-1} -> dim_j (x2 with a variance output)
//
// conv_i is the model's convolution built as a one-layer stack (ConvCommon: HydraGNN's
// get_conv(input_dim, output_dim[, last_layer])): the hidden ones are not HydraGNN's last_layer
// (EGNN updates coordinates when equivariant, PaiNN/PNAEq update vectors, GAT concatenates its
// heads: its widths are K d_i), the outputs are. Vector features (EGNN's coordinate displacement,
// PaiNN/PNAEq's vectors) flow from the trunk's last layer through the hidden convolutions; the
// vectors a convolution outputs after the last hidden one are unused, as in HydraGNN. The
// activation after the output convolution is HydraGNN's too (its node outputs are activated).
//
// HydraGNN builds these convolutions without edge features (get_conv without edge_dim): so does this.
// Every convolution computes its own edge geometry (its radial basis etc.) and adds its dL/dr into
// the model's; each runs in its own workspace scope, so the trunk's caches are never overwritten.
// Parameters: convs_node_hidden.<branch>.<i>, batch_norms_node_hidden.<branch>.<i>,
// convs_node_output.<branch>.<j>, batch_norms_node_output.<branch>.<j> (HydraGNN's state_dict also
// lists the same modules under heads_NN.<head>.<branch>.<k>). One head branch only: with several,
// HydraGNN d251f816 runs a branch's convolutions on the rows of its atoms with the whole batch's
// edge_index, which does not define a graph.
#pragma once

#include <hydragnn/conv/edge_features.hpp>
#include <hydragnn/conv/traits.hpp>
#include <hydragnn/heads/heads.hpp>
#include <hydragnn/nn/batchnorm.hpp>

#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace hydragnn {

template <class Conv>
class ConvNodeHeads {
  using traits = conv_traits<Conv>;

 public:
  /// One convolution -> BatchNorm -> activation.
  template <class S, class M>
  struct StepCache {
    Mat<S, M> r;
    typename Conv::template EdgeCache<S, M> edge;
    typename Conv::template LayerCache<S, M> layer;
    typename BatchNorm::template Cache<S, M> norm;
    NodeState<S, M> in;   ///< the convolution's input
    NodeState<S, M> out;  ///< its output (h: the BatchNorm's input)
    Mat<S, M> pre;        ///< BatchNorm output = the activation's input
    Mat<S, M> y;          ///< activated
  };
  template <class S, class M>
  struct Cache {
    std::vector<StepCache<S, M>> hidden, output;
  };

  ConvNodeHeads() = default;
  /// Builds the stack for spec's node outputs: the per-atom energy when spec.energy and not pooled,
  /// then every direct node head. stats_offset: where the BatchNorms' running statistics start in
  /// the model's statistics buffer.
  ConvNodeHeads(ParamAllocator& alloc, const HeadsSpec& spec, const ConvCommon& trunk,
                const typename Conv::options_type& opt, long stats_offset) {
    if (spec.num_branches() != 1)
      throw std::invalid_argument(
          "hydragnn::ConvNodeHeads: node heads of type conv need one head branch (HydraGNN d251f816 runs a branch's "
          "convolutions on its atoms with the whole batch's edges, which is not a graph); this model has " +
          std::to_string(spec.num_branches()));
    if (spec.num_nodes != 0)
      throw std::invalid_argument("hydragnn::ConvNodeHeads: node heads are conv or mlp_per_node, not both");
    const BranchSpec& bs = spec.branches.front();
    if (bs.node_head_dims.empty())
      throw std::invalid_argument("hydragnn::ConvNodeHeads: a conv node head needs at least one hidden layer "
                                  "(output_heads.node.dim_headlayers)");
    std::vector<int> outs;
    if (spec.energy && !spec.energy_pooled) outs.push_back(1);
    for (const auto& hd : spec.heads)
      if (hd.node) outs.push_back(spec.head_variance ? 2 * hd.dim : hd.dim);
    act_ = spec.act;
    // HydraGNN's _init_node_conv calls get_conv without edge_dim: no edge features in the head
    typename Conv::options_type o = opt;
    if constexpr (std::is_base_of<EdgeFeatureOptions, typename Conv::options_type>::value) o.edge_features.clear();
    long off = stats_offset;
    auto add = [&](std::vector<Step>& steps, const std::string& what, int index, int in, int out, bool last) {
      ConvCommon c = trunk;
      c.hidden_dim = out;
      c.input_dim = in;
      c.num_conv_layers = 1;
      c.prefix = "convs_node_" + what + "." + bs.name;
      c.first_index = index;
      c.stack_hidden_dim = trunk.inner_dim();
      c.last_layer = last;
      c.head = true;
      Step s;
      s.conv = Conv(alloc, c, o);
      s.width = traits::layer_width(s.conv, 0, out);
      const std::string bn = "batch_norms_node_" + what + "." + bs.name + "." + std::to_string(index);
      s.norm = BatchNorm(alloc, s.width, off, bn);
      s.norm_name = bn;
      s.scope = "hydragnn::ConvNodeHeads::" + what + "." + std::to_string(index);
      off += long(s.norm.num_statistics());
      steps.push_back(std::move(s));
      return steps.back().width;
    };
    int in = trunk.hidden_dim;
    for (std::size_t i = 0; i < bs.node_head_dims.size(); ++i)
      in = add(hidden_, "hidden", int(i), in, bs.node_head_dims[i], false);
    for (std::size_t j = 0; j < outs.size(); ++j) {
      const int w = add(output_, "output", int(j), in, outs[j], true);
      if (w != outs[j])
        throw std::logic_error("hydragnn::ConvNodeHeads: output convolution " + std::to_string(j) + " is " +
                               std::to_string(w) + " wide, the head needs " + std::to_string(outs[j]));
    }
    num_stats_ = std::size_t(off - stats_offset);
  }

  bool empty() const { return output_.empty(); }
  /// The mode and random seed of the passes that follow (stochastic convolutions: GAT's dropout).
  void set_pass(bool training, std::uint64_t seed) const {
    for (const auto* v : {&hidden_, &output_})
      for (const Step& s : *v) traits::set_pass(s.conv, training, seed);
  }
  std::size_t num_outputs() const { return output_.size(); }
  /// Running statistics of the BatchNorms (2 per channel), laid out from the constructor's offset.
  std::size_t num_statistics() const { return num_stats_; }
  /// (module name, BatchNorm) of every BatchNorm, hidden then output.
  std::vector<std::pair<std::string, const BatchNorm*>> norms() const {
    std::vector<std::pair<std::string, const BatchNorm*>> out;
    for (const auto* v : {&hidden_, &output_})
      for (const Step& s : *v) out.emplace_back(s.norm_name, &s.norm);
    return out;
  }

  /// Forward from the trunk's last (activated) state x; returns the node outputs (N x dim_j,
  /// workspace views). batch_stats: BatchNorm with the batch's statistics (training), which it
  /// records into `record` when that is not empty; running statistics otherwise.
  template <class Exec, class S, class T>
  std::vector<Mat<S, mem_t<Exec>>> forward(const Exec& exec, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                                           const Mat<S, mem_t<Exec>>& r, const NodeState<S, mem_t<Exec>>& x,
                                           bool batch_stats, const Vec<double, mem_t<Exec>>& running,
                                           const Vec<double, mem_t<Exec>>& record, Cache<S, mem_t<Exec>>& c,
                                           Workspace<mem_t<Exec>>& ws) const {
    ProfileRegion region("hydragnn::ConvNodeHeads::forward");
    c.hidden.resize(hidden_.size());
    c.output.resize(output_.size());
    NodeState<S, mem_t<Exec>> cur = x;
    for (std::size_t i = 0; i < hidden_.size(); ++i) {
      step_forward<Exec, S, T>(exec, hidden_[i], w, b, r, cur, batch_stats, running, record, c.hidden[i], ws);
      cur = c.hidden[i].out;
      cur.h = c.hidden[i].y;
    }
    std::vector<Mat<S, mem_t<Exec>>> y(output_.size());
    for (std::size_t j = 0; j < output_.size(); ++j) {
      step_forward<Exec, S, T>(exec, output_[j], w, b, r, cur, batch_stats, running, record, c.output[j], ws);
      y[j] = c.output[j].y;
    }
    return y;
  }

  /// Given dL/dy_j (empty views for outputs without a loss): parameter gradients into g (skipped when
  /// empty), dL/dr added into rbar (skipped when rbar is empty), and dL/dx returned (empty views when
  /// no output has a cotangent).
  template <class Exec, class S, class T>
  NodeState<S, mem_t<Exec>> backward(const Exec& exec, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                                     const Cache<S, mem_t<Exec>>& c, const std::vector<Mat<S, mem_t<Exec>>>& ybar,
                                     const Vec<real_t<S>, mem_t<Exec>>& g, const Mat<S, mem_t<Exec>>& rbar,
                                     Workspace<mem_t<Exec>>& ws) const {
    using M = mem_t<Exec>;
    ProfileRegion region("hydragnn::ConvNodeHeads::backward");
    NodeState<S, M> xbar;  // dL/d(input of the output convolutions)
    bool any = false;
    for (std::size_t j = 0; j < output_.size(); ++j) {
      if (j >= ybar.size() || ybar[j].extent(0) == 0) continue;
      NodeState<S, M> ib = step_backward<Exec, S, T>(exec, output_[j], w, b, c.output[j], ybar[j], VFeat<S, M>(), g, rbar, ws);
      if (!any) {
        Workspace<M>& sw = ws.scope("hydragnn::ConvNodeHeads::x_bar");
        xbar.h = sw.template mat<S>("hydragnn::ConvNodeHeads::backward.h", 0, ib.h.extent(0), ib.h.extent(1));
        Kokkos::deep_copy(exec, xbar.h, ib.h);
        if constexpr (traits::has_vectors) {
          xbar.v = sw.template vec3<S>("hydragnn::ConvNodeHeads::backward.v", 0, ib.v.extent(0), 3, ib.v.extent(2));
          Kokkos::deep_copy(exec, xbar.v, ib.v);
        }
        any = true;
      } else {
        kernels::add_into<Exec, S>(exec, ib.h, xbar.h);
        if constexpr (traits::has_vectors) add_vectors(exec, ib.v, xbar.v);
      }
    }
    if (!any) return NodeState<S, M>();
    for (std::size_t i = hidden_.size(); i-- > 0;) xbar = step_backward<Exec, S, T>(exec, hidden_[i], w, b, c.hidden[i], xbar.h, xbar.v, g, rbar, ws);
    return xbar;
  }

 private:
  struct Step {
    Conv conv;
    BatchNorm norm;
    int width = 0;
    std::string norm_name, scope;
  };

  template <class Exec, class S>
  static void add_vectors(const Exec& exec, const VFeat<S, mem_t<Exec>>& from, const VFeat<S, mem_t<Exec>>& into) {
    const Mat<S, mem_t<Exec>> f(from.data(), from.extent(0), from.extent(1) * from.extent(2));
    const Mat<S, mem_t<Exec>> t(into.data(), into.extent(0), into.extent(1) * into.extent(2));
    kernels::add_into<Exec, S>(exec, f, t);
  }

  template <class Exec, class S, class T>
  void step_forward(const Exec& exec, const Step& s, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                    const Mat<S, mem_t<Exec>>& r, const NodeState<S, mem_t<Exec>>& in, bool batch_stats,
                    const Vec<double, mem_t<Exec>>& running, const Vec<double, mem_t<Exec>>& record,
                    StepCache<S, mem_t<Exec>>& c, Workspace<mem_t<Exec>>& ws_parent) const {
    Workspace<mem_t<Exec>>& ws = ws_parent.scope(s.scope);
    c.r = r;
    c.in = in;
    s.conv.template edge_forward<Exec, S>(exec, b, r, c.edge, ws);
    c.out = NodeState<S, mem_t<Exec>>();
    s.conv.template layer_forward<Exec, S, T>(exec, 0, w, b, c.edge, in, c.layer, c.out, ws);
    c.pre = s.norm.template forward<Exec, S, T>(exec, w, c.out.h, batch_stats, running, record, c.norm, ws, 0);
    c.y = ws.template mat<S>("hydragnn::ConvNodeHeads::forward.y", 0, c.pre.extent(0), c.pre.extent(1));
    kernels::activation_forward<Exec, S>(exec, act_, c.pre, c.y);
  }

  /// ybar: dL/dy of the step; vbar: dL/d(output vectors) (empty: zero).
  template <class Exec, class S, class T>
  NodeState<S, mem_t<Exec>> step_backward(const Exec& exec, const Step& s, const Weights<T, mem_t<Exec>>& w,
                                          const Batch<mem_t<Exec>>& b, const StepCache<S, mem_t<Exec>>& c,
                                          const Mat<S, mem_t<Exec>>& ybar, const VFeat<S, mem_t<Exec>>& vbar,
                                          const Vec<real_t<S>, mem_t<Exec>>& g, const Mat<S, mem_t<Exec>>& rbar,
                                          Workspace<mem_t<Exec>>& ws_parent) const {
    using M = mem_t<Exec>;
    Workspace<M>& ws = ws_parent.scope(s.scope);
    const std::string lbl = "hydragnn::ConvNodeHeads::backward";
    auto prebar = ws.template mat<S>(lbl + ".pre_bar", 0, c.pre.extent(0), c.pre.extent(1));
    kernels::activation_backward<Exec, S>(exec, act_, c.pre, ybar, prebar);
    NodeState<S, M> out_bar;
    out_bar.h = s.norm.template backward<Exec, S, T>(exec, w, c.norm, prebar, g, ws, 0);
    if constexpr (traits::has_vectors) {
      out_bar.v = vbar;
      if (out_bar.v.extent(0) == 0) {
        out_bar.v = ws.template vec3<S>(lbl + ".v_bar", 0, c.out.v.extent(0), 3, c.out.v.extent(2));
        Kokkos::deep_copy(exec, out_bar.v, S(0));
      }
    }
    typename Conv::template EdgeGrad<S, M> eg;  // empty views unless the geometry gradient is wanted
    const bool geometry = rbar.extent(0) > 0;
    if (geometry) s.conv.template edge_grad_init<Exec, S>(exec, b, eg, ws);
    NodeState<S, M> in_bar;
    s.conv.template layer_backward<Exec, S, T>(exec, 0, w, b, c.edge, c.in, c.layer, out_bar, in_bar, g, eg, ws);
    if (geometry) s.conv.template edge_backward<Exec, S>(exec, b, c.r, c.edge, eg, rbar, ws);
    return in_bar;
  }

  std::vector<Step> hidden_, output_;
  Activation act_ = Activation::SiLU;
  std::size_t num_stats_ = 0;
};

}  // namespace hydragnn
