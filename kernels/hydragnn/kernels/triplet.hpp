// SPDX-License-Identifier: BSD-3-Clause
// Triplet message passing of DimeNet (graph/triplets.hpp builds the CSR): a triplet t = (kj, ji)
// gathers the features of its kj edge, and triplet messages are summed onto their ji edge. Triplets
// are sorted by ji (ptr), so the sum is a CSR segment sum; the backward of the gather by kj is a
// segment sum through (kj_perm, kj_ptr). No atomics; every mode folds in the same order.
//
// DimeNet's triplet message, agg(ji) = sum_t X(kj(t)) * s(t), runs fused (triplet_message_sum):
// gather -> multiply -> sum in one pass over each ji edge's triplets, so the two T x F tensors of
// the composed form (the gathered rows and the products) are never stored; its backward walks the
// triplets once in ji order (sbar) and once in kj order (Xbar). With s = lin(S1) (DimeNet's filter,
// T x basis_emb -> T x int_emb) triplet_filter_message_sum and its backward recompute each row of s
// where they read it, so the T x F filter is not stored either. Without a parameter gradient sbar
// is read only by lin(S1)'s input gradient: triplet_message_backward_filter_input forms each
// triplet's row of sbar and multiplies it by W at once, so no T x F sbar is stored. Every term is
// the composed form's (the same products, summed in the same order).
#pragma once

#include <hydragnn/kernels/dense.hpp>
#include <hydragnn/kernels/segment.hpp>

namespace hydragnn {
namespace kernels {
namespace detail {

/// The rows s(t,:) of a triplet message: stored (T x F), or DimeNet's filter s = lin(S1), each
/// element the sum linear_forward computes (bias, then b ascending), recomputed where read.
template <class S, class M>
struct StoredRows {
  CMat<S, M> Sm;
  KOKKOS_INLINE_FUNCTION S operator()(long t, long c) const { return Sm(t, c); }
};
template <class S, class T, class M>
struct FilterRows {
  CMat<S, M> S1;   ///< T x in
  CVec<T, M> p;    ///< the parameters
  CVec<T, M> pt;   ///< their transposed blocks (HostRow: W^T rows, contiguous over outputs)
  LinearShape sh;  ///< in -> F
  KOKKOS_INLINE_FUNCTION S operator()(long t, long c) const {
    S acc = sh.b_off >= 0 ? S(p(sh.b_off + c)) : S(0);
    const long w = sh.w_off + c * sh.stride();
    for (int b = 0; b < sh.in; ++b) acc += S1(t, b) * p(w + b);
    return acc;
  }
  /// The whole row t, plane by plane, into sp[plane][c] (c < F): HostRow, vectorised over c.
  template <class R>
  KOKKOS_INLINE_FUNCTION void row(long t, int F, R (*sp)[host_row_max]) const {
    constexpr int P = scalar_traits<S>::is_dual ? 2 : 1;
    for (int pl = 0; pl < P; ++pl)
      for (int c = 0; c < F; ++c) sp[pl][c] = sh.b_off >= 0 && pl == 0 ? R(p(sh.b_off + c)) : R(0);
    const T* wt = pt.data() + sh.wt_off;
    for (int b = 0; b < sh.in; ++b) {
      const S x = S1(t, b);
      for (int pl = 0; pl < P; ++pl) {
        const R xv = plane_of(x, pl);
        R* row = sp[pl];
        for (int c = 0; c < F; ++c) row[c] += xv * wt[long(b) * F + c];
      }
    }
  }
};

/// out(g,c) = sum_{t in items of g} U(idx(t),c) * s(t,c), items in order. The message
/// (items: ji segments, U = X, idx = kj: agg) and its backward to X (items: kj segments through
/// kj_perm, U = aggbar, idx = ji: Xbar).
template <class S, class M, class Items, class Rows>
struct TripletMessageRed {
  using acc_t = S;
  Items items;
  CMat<S, M> U;
  Rows s;
  CVec<int, M> idx;
  Mat<S, M> out;
  KOKKOS_INLINE_FUNCTION void init(acc_t& a, long, long) const { a = S(0); }
  KOKKOS_INLINE_FUNCTION void step(acc_t& a, long t, long c) const { a += S(U(idx(t), c) * s(t, c)); }
  KOKKOS_INLINE_FUNCTION void finish(acc_t& a, long g, long c, int) const { out(g, c) = a; }
};

/// a(c) += u(c) * s(t,c) for c < F, with s's row t in planes sp (the Dual product's order).
template <class S, class R, class V>
KOKKOS_INLINE_FUNCTION void add_products(S* a, const V& u, long row, R (*sp)[host_row_max], int F) {
  if constexpr (scalar_traits<S>::is_dual)
    for (int c = 0; c < F; ++c) a[c] += S(u(row, c) * S(sp[0][c], sp[1][c]));
  else
    for (int c = 0; c < F; ++c) a[c] += S(u(row, c) * sp[0][c]);
}

#ifdef HYDRAGNN_SIMD_PACKS
/// Vectors [c0, c0 + NP lanes) of filter_row_products: NP independent chains of s (one chain alone
/// waits on each multiply-add's latency: 8 inputs took 4 cycles each).
template <int NP, class S, class M>
inline __attribute__((always_inline)) void filter_packs(const FilterRows<S, real_t<S>, M>& f, const real_t<S>* x,
                                                        const real_t<S>* ur, int c0, int F,
                                                        real_t<S> (*ap)[host_row_max]) {
  using R = real_t<S>;
  using V = simd::pack_t<R>;
  constexpr int L = simd::lanes<R>, P = scalar_traits<S>::is_dual ? 2 : 1;
  const R* wt = f.pt.data() + f.sh.wt_off + c0;
  const long bo = f.sh.b_off;
  V sv[NP], sd[NP];
  HYDRAGNN_UNROLL
  for (int v = 0; v < NP; ++v) {
    sv[v] = bo >= 0 ? simd::load(f.p.data() + bo + c0 + v * L) : V{};
    sd[v] = V{};
  }
  for (int b = 0; b < f.sh.in; ++b) {
    const R xv = x[b * P];
    const R* wr = wt + long(b) * F;
    HYDRAGNN_UNROLL
    for (int v = 0; v < NP; ++v) {
      const V wv = simd::load(wr + v * L);
      sv[v] += xv * wv;
      if constexpr (P == 2) sd[v] += x[b * P + 1] * wv;
    }
  }
  HYDRAGNN_UNROLL
  for (int v = 0; v < NP; ++v) {
    const int c = c0 + v * L;
    if constexpr (P == 2) {
      V uv, ud;
      simd::deinterleave(ur + 2 * c, uv, ud);
      simd::store(&ap[0][c], simd::load(&ap[0][c]) + uv * sv[v]);
      simd::store(&ap[1][c], simd::load(&ap[1][c]) + (ud * sv[v] + uv * sd[v]));
    } else {
      simd::store(&ap[0][c], simd::load(&ap[0][c]) + simd::load(ur + c) * sv[v]);
    }
  }
}

/// ap[plane](c) += (u(row,c) * s(t,c)) plane by plane for c < F (F a multiple of the vector width,
/// W^T of type real_t<S>): the vectors of s built in registers from S1's row and W^T (bias, then
/// b ascending, as FilterRows::row) and used at once; the product in Dual's order.
template <class S, class M, class U>
inline void filter_row_products(const FilterRows<S, real_t<S>, M>& f, long t, const U& u, long row, int F,
                                real_t<S> (*ap)[host_row_max]) {
  using R = real_t<S>;
  constexpr int L = simd::lanes<R>;
  const R* x = reinterpret_cast<const R*>(&f.S1(t, 0));  // in scalars: P reals each
  const R* ur = reinterpret_cast<const R*>(&u(row, 0));
  int c0 = 0;
  for (; c0 + 4 * L <= F; c0 += 4 * L) filter_packs<4>(f, x, ur, c0, F, ap);
  switch ((F - c0) / L) {
    case 3: filter_packs<3>(f, x, ur, c0, F, ap); break;
    case 2: filter_packs<2>(f, x, ur, c0, F, ap); break;
    case 1: filter_packs<1>(f, x, ur, c0, F, ap); break;
    default: break;
  }
}
#endif

/// The S1 row and the U row (read scattered: X by kj, or aggbar by ji) of item q + ahead of a
/// filter reduction towards the cache (host vector builds; nothing elsewhere).
template <class Red>
KOKKOS_INLINE_FUNCTION void prefetch_item(const Red& red, int q, int end, int ahead) {
#ifdef HYDRAGNN_SIMD_PACKS
  if (q + ahead >= end) return;
  const long t = red.items.item(q + ahead);
  __builtin_prefetch(&red.s.S1(t, 0));
  const char* ur = reinterpret_cast<const char*>(&red.U(red.idx(t), 0));
  for (long o = 0; o < long(red.s.sh.out * sizeof(typename Red::acc_t)); o += 64) __builtin_prefetch(ur + o);
#else
  (void)red, (void)q, (void)end, (void)ahead;
#endif
}

/// A TripletMessageRed with FilterRows: HostRow computes each triplet's row of s once (vectorised
/// over c; with W^T of the activations' real type and whole vectors, in registers:
/// filter_row_products) where the generic reducer would recompute it per element. ahead: items
/// whose rows prefetch_item sends ahead.
template <class Mode, class Exec, class S, class T, class Items>
void filter_reduce(const Exec& exec, const char* label,
                   const TripletMessageRed<S, mem_t<Exec>, Items, FilterRows<S, T, mem_t<Exec>>>& red, int ahead) {
  check_mode<Mode>();
  const long segs = long(red.out.extent(0)), F = red.s.sh.out;
  if (segs <= 0 || F <= 0) return;
  if constexpr (is_host_row<Mode>) {
    const FilterRows<S, T, mem_t<Exec>>& f = red.s;
    if (F <= host_row_max && f.sh.transposed_in(f.p, f.pt)) {
      using R = real_t<S>;
      constexpr int P = scalar_traits<S>::is_dual ? 2 : 1;
#ifdef HYDRAGNN_SIMD_PACKS
      if constexpr (std::is_same<T, R>::value) {
        if (F % simd::lanes<R> == 0) {  // s's vectors in registers, the sums in planes
          Kokkos::parallel_for(label, Kokkos::RangePolicy<Exec>(exec, 0, segs), KOKKOS_LAMBDA(const long g) {
            alignas(64) R ap[P][host_row_max];
            for (int pl = 0; pl < P; ++pl)
              for (long c = 0; c < F; ++c) ap[pl][c] = R(0);
            const int b = red.items.begin(g), en = red.items.end(g);
            for (int q = b; q < en; ++q) {
              prefetch_item(red, q, en, ahead);
              const long t = red.items.item(q);
              filter_row_products(red.s, t, red.U, red.idx(t), int(F), ap);
            }
            for (long c = 0; c < F; ++c) {
              if constexpr (P == 2)
                red.out(g, c) = S(ap[0][c], ap[1][c]);
              else
                red.out(g, c) = S(ap[0][c]);
            }
          });
          return;
        }
      }
#endif
      Kokkos::parallel_for(label, Kokkos::RangePolicy<Exec>(exec, 0, segs), KOKKOS_LAMBDA(const long g) {
        S acc[host_row_max];
        R sp[P][host_row_max];
        for (long c = 0; c < F; ++c) acc[c] = S(0);
        const int b = red.items.begin(g), en = red.items.end(g);
        for (int q = b; q < en; ++q) {
          prefetch_item(red, q, en, ahead);
          const long t = red.items.item(q);
          red.s.row(t, int(F), sp);
          add_products(acc, red.U, red.idx(t), sp, int(F));
        }
        for (long c = 0; c < F; ++c) red.out(g, c) = acc[c];
      });
      return;
    }
  }
  segment_reduce<Mode>(exec, label, segs, F, red);
}

#ifdef HYDRAGNN_SIMD_PACKS
/// HostRow body of triplet_message_backward_filter_input on real rows: GT triplets at a time, each
/// one's row of Smbar (aggbar(ji(t)) * X(kj(t)), F reals) in a stack buffer, then its S1bar row in
/// one register of EW lanes (in <= EW), the GT rows' sums side by side (independent chains) over
/// c ascending from zero, W's rows packed zero-padded to EW lanes (wp: F x EW reals).
template <int EW, class R, class M>
struct FilterInputRows {
  static constexpr int GT = 8;
  CMat<R, M> X, aggbar;
  CVec<int, M> kj, ji;
  Mat<R, M> S1bar;
  const R* wp;
  long T;
  int F, in, col0;
  KOKKOS_INLINE_FUNCTION void operator()(const long grp) const {
    typedef R vt __attribute__((vector_size(EW * sizeof(R))));
    alignas(64) R sm[GT][host_row_max];
    const long t0 = grp * GT;
    const int n = T - t0 < GT ? int(T - t0) : GT;
    // the next group's rows of X (scattered by kj) towards the cache while this group's products run
    for (long t = t0 + GT; t < t0 + 2 * GT && t < T; ++t) {
      const char* xr = reinterpret_cast<const char*>(&X(kj(t), 0));
      for (long o = 0; o < long(F * sizeof(R)); o += 64) __builtin_prefetch(xr + o);
    }
    for (int r = 0; r < GT; ++r) {  // rows past n repeat the last one (never stored)
      const long t = t0 + (r < n ? r : n - 1);
      const R* ar = &aggbar(ji(t), 0);
      const R* xr = &X(kj(t), 0);
      R* sr = sm[r];
      for (int c = 0; c < F; ++c) sr[c] = ar[c] * xr[c];
    }
    vt acc[GT];
    HYDRAGNN_UNROLL
    for (int r = 0; r < GT; ++r) acc[r] = vt{};
    for (int c = 0; c < F; ++c) {
      vt wv;
      __builtin_memcpy(&wv, wp + long(c) * EW, sizeof(vt));
      HYDRAGNN_UNROLL
      for (int r = 0; r < GT; ++r) acc[r] += sm[r][c] * wv;
    }
    for (int r = 0; r < n; ++r) {
      R* o = &S1bar(t0 + r, col0);
      if (in == EW) {
        __builtin_memcpy(o, &acc[r], sizeof(vt));
      } else {
        for (int b = 0; b < in; ++b) o[b] = acc[r][b];
      }
    }
  }
};
#endif

}  // namespace detail

/// T(t,:) (+)= X(kj(t),:)                                          // X: E x F, kj: T -> T: T x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void triplet_gather(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const CVec<int, mem_t<Exec>>& kj,
                    const Mat<S, mem_t<Exec>>& Tm, bool accumulate = false) {
  detail::gather_impl<Mode>(exec, "hydragnn::Triplet::gather", X, kj, Tm, accumulate);
}

/// Backward of triplet_gather: Xbar(e,:) (+)= sum_{q in [kj_ptr(e), kj_ptr(e+1))} Tbar(kj_perm(q),:)
///                                         // Tbar: T x F, kj_perm: T, kj_ptr: E+1 -> Xbar: E x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void triplet_gather_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& Tbar, const CVec<int, mem_t<Exec>>& kj_perm,
                             const CVec<int, mem_t<Exec>>& kj_ptr, const Mat<S, mem_t<Exec>>& Xbar, bool accumulate) {
  detail::sum_impl<Mode>(exec, "hydragnn::Triplet::gather_backward", Tbar,
                         detail::PermItems<mem_t<Exec>>{kj_perm, kj_ptr}, Xbar, accumulate);
}

/// Y(ji,:) (+)= sum_{t in [ptr(ji), ptr(ji+1))} T(t,:)                // T: T x F, ptr: E+1 -> Y: E x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void triplet_sum(const Exec& exec, const CMat<S, mem_t<Exec>>& Tm, const CVec<int, mem_t<Exec>>& ptr,
                 const Mat<S, mem_t<Exec>>& Y, bool accumulate) {
  detail::sum_impl<Mode>(exec, "hydragnn::Triplet::sum", Tm, detail::CsrItems<mem_t<Exec>>{ptr}, Y, accumulate);
}

/// Backward of triplet_sum: Tbar(t,:) (+)= Ybar(ji(t),:)              // Ybar: E x F, ptr: E+1 -> Tbar: T x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void triplet_sum_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& Ybar, const CVec<int, mem_t<Exec>>& ptr,
                          const Mat<S, mem_t<Exec>>& Tbar, bool accumulate) {
  detail::sum_backward_impl<Mode>(exec, "hydragnn::Triplet::sum_backward", Ybar, detail::CsrItems<mem_t<Exec>>{ptr},
                                  Tbar, accumulate);
}

/// agg(e,:) = sum_{t in [ptr(e), ptr(e+1))} X(kj(t),:) * Sm(t,:)      // X: E x F, Sm: T x F -> agg: E x F
/// The composed triplet_gather -> hadamard -> triplet_sum, bitwise, without its T x F intermediates.
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void triplet_message_sum(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const CMat<S, mem_t<Exec>>& Sm,
                         const CVec<int, mem_t<Exec>>& kj, const CVec<int, mem_t<Exec>>& ptr,
                         const Mat<S, mem_t<Exec>>& agg) {
  using Rows = detail::StoredRows<S, mem_t<Exec>>;
  detail::segment_reduce<Mode>(exec, "hydragnn::Triplet::message_sum", long(agg.extent(0)), long(agg.extent(1)),
                               detail::TripletMessageRed<S, mem_t<Exec>, detail::CsrItems<mem_t<Exec>>, Rows>{
                                   {ptr}, X, Rows{Sm}, kj, agg});
}

/// Backward of triplet_message_sum (outputs overwritten; one of extent 0 is skipped):
///   Xbar(k,:)  = sum_{q in [kj_ptr(k), kj_ptr(k+1))} aggbar(ji(t),:) * Sm(t,:),  t = kj_perm(q)
///   Smbar(t,:) = aggbar(ji(t),:) * X(kj(t),:)
/// Bitwise the composed backward (triplet_sum_backward -> hadamard_backward -> triplet_gather_backward).
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void triplet_message_sum_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const CMat<S, mem_t<Exec>>& Sm,
                                  const CVec<int, mem_t<Exec>>& kj, const CVec<int, mem_t<Exec>>& ptr,
                                  const CVec<int, mem_t<Exec>>& ji, const CVec<int, mem_t<Exec>>& kj_perm,
                                  const CVec<int, mem_t<Exec>>& kj_ptr, const CMat<S, mem_t<Exec>>& aggbar,
                                  const Mat<S, mem_t<Exec>>& Xbar, const Mat<S, mem_t<Exec>>& Smbar) {
  // X: E x F, Sm: T x F, kj, ji: T, ptr, kj_ptr: E+1, kj_perm: T, aggbar: E x F -> Xbar: E x F, Smbar: T x F
  using M = mem_t<Exec>;
  using Rows = detail::StoredRows<S, M>;
  const long E = long(aggbar.extent(0)), F = long(aggbar.extent(1));
  if (Smbar.extent(0) > 0) {
    detail::segment_walk<Mode>(exec, "hydragnn::Triplet::message_sum_backward_sm", E, F, detail::CsrItems<M>{ptr},
                               KOKKOS_LAMBDA(const long e, const long t, const long c, int) {
                                 Smbar(t, c) = S(aggbar(e, c) * X(kj(t), c));
                               });
  }
  if (Xbar.extent(0) > 0)
    detail::segment_reduce<Mode>(exec, "hydragnn::Triplet::message_sum_backward_x", long(Xbar.extent(0)), F,
                                 detail::TripletMessageRed<S, M, detail::PermItems<M>, Rows>{
                                     {kj_perm, kj_ptr}, aggbar, Rows{Sm}, ji, Xbar});
}

/// The backward of DimeNet's filtered message to the filter's input when the filter's own cotangent
/// is not wanted (no parameter gradient), s = lin(S1) (sh: in -> F, W(c, b) = p(w_off + c ld + b)):
///   S1bar(t, b) = sum_{c < F} [aggbar(ji(t), c) * X(kj(t), c)] W(c, b),   c ascending from zero
/// bitwise triplet_message_sum_backward's Smbar followed by linear_backward_input(Smbar, sh, S1bar),
/// without the T x F Smbar (each row formed, used and dropped). The rows go to columns
/// [col0, col0 + sh.in) of S1bar (DimeNet places each layer's block side by side, to run lin_sbf1's
/// input gradient of every layer as one product); its other columns are left as they are.
///                          // X, aggbar: E x F, kj, ji: T -> S1bar: T x (>= col0 + sh.in) (overwritten)
template <class Exec, class S, class T, class Mode = default_mode_t<Exec>>
void triplet_message_backward_filter_input(const Exec& exec, const CMat<S, mem_t<Exec>>& X,
                                           const CVec<int, mem_t<Exec>>& kj, const CVec<int, mem_t<Exec>>& ji,
                                           const CMat<S, mem_t<Exec>>& aggbar, const Weights<T, mem_t<Exec>>& w,
                                           const LinearShape& sh, const Mat<S, mem_t<Exec>>& S1bar, int col0 = 0) {
  const char* label = "hydragnn::Triplet::message_backward_filter_input";
  const long Tn = long(S1bar.extent(0));
  const int F = sh.out, in = sh.in;
  if (long(aggbar.extent(1)) != F || long(X.extent(1)) != F || col0 < 0 || long(S1bar.extent(1)) < long(col0) + in ||
      long(kj.extent(0)) != Tn || long(ji.extent(0)) != Tn)
    throw std::logic_error(
        "triplet_message_backward_filter_input: shapes (X, aggbar: E x out; kj, ji: T; S1bar: T x (>= col0 + in))");
  if (Tn <= 0 || in <= 0) return;
#ifdef HYDRAGNN_SIMD_PACKS
  if constexpr (detail::host_rows_on_host<Mode, Exec> && std::is_same<S, T>::value) {
    using R = T;
    constexpr int L = simd::lanes<R>;
    if (F <= detail::host_row_max && in <= L) {
      alignas(64) R wp[detail::host_row_max * L];  // W's rows zero-padded (host stack: HostRow runs on the host)
      const int EW = in <= L / 2 ? L / 2 : L;
      for (int c = 0; c < F; ++c)
        for (int b = 0; b < EW; ++b) wp[long(c) * EW + b] = b < in ? w.p(sh.w_off + long(c) * sh.stride() + b) : R(0);
      auto launch = [&](auto ew) {
        using Body = detail::FilterInputRows<decltype(ew)::value, R, mem_t<Exec>>;
        const long groups = (Tn + Body::GT - 1) / Body::GT;  // a work item per group of GT triplets
        Kokkos::parallel_for(label, Kokkos::RangePolicy<Exec>(exec, 0, groups),
                             Body{X, aggbar, kj, ji, S1bar, wp, Tn, F, in, col0});
      };
      if (EW == L / 2) launch(std::integral_constant<int, L / 2>{});
      else launch(std::integral_constant<int, L>{});
      return;
    }
  }
#endif
  const auto p = w.p;
  const long w0 = sh.w_off, ld = sh.stride();
  detail::for_each_element<Mode>(exec, label, Tn, in, KOKKOS_LAMBDA(const long t, const long b) {
    const long e = ji(t), k = kj(t);
    S acc(0);
    for (int c = 0; c < F; ++c) acc += S(aggbar(e, c) * X(k, c)) * p(w0 + c * ld + b);
    S1bar(t, col0 + b) = acc;
  });
}

/// triplet_message_sum with the message rows a Linear layer of S1 (DimeNet's lin_sbf2), recomputed
/// per triplet instead of stored:  agg(e,:) = sum_t X(kj(t),:) * s(t,:),  s = linear_forward(S1).
/// Bitwise linear_forward followed by triplet_message_sum.   // X: E x F, S1: T x in -> agg: E x F (F = sh.out)
template <class Exec, class S, class T, class Mode = default_mode_t<Exec>>
void triplet_filter_message_sum(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const CMat<S, mem_t<Exec>>& S1,
                                const Weights<T, mem_t<Exec>>& w, const LinearShape& sh,
                                const CVec<int, mem_t<Exec>>& kj, const CVec<int, mem_t<Exec>>& ptr,
                                const Mat<S, mem_t<Exec>>& agg) {
  using M = mem_t<Exec>;
  using Rows = detail::FilterRows<S, T, M>;
  const detail::TripletMessageRed<S, M, detail::CsrItems<M>, Rows> red{{ptr}, X, Rows{S1, w.p, w.pt, sh}, kj, agg};
  detail::filter_reduce<Mode>(exec, "hydragnn::Triplet::filter_message_sum", red,
                              detail::triplet_prefetch_ahead);
}

/// The backward of triplet_filter_message_sum to X (the backward to s is triplet_message_sum_backward's
/// Smbar, which does not read s): Xbar(k,:) = sum_{t: kj(t) = k} aggbar(ji(t),:) * s(t,:), kj_perm
/// order, s recomputed. Bitwise linear_forward followed by triplet_message_sum_backward's Xbar.
template <class Exec, class S, class T, class Mode = default_mode_t<Exec>>
void triplet_filter_message_backward_x(const Exec& exec, const CMat<S, mem_t<Exec>>& S1, const Weights<T, mem_t<Exec>>& w,
                                       const LinearShape& sh, const CVec<int, mem_t<Exec>>& ji,
                                       const CVec<int, mem_t<Exec>>& kj_perm, const CVec<int, mem_t<Exec>>& kj_ptr,
                                       const CMat<S, mem_t<Exec>>& aggbar, const Mat<S, mem_t<Exec>>& Xbar) {
  using M = mem_t<Exec>;
  using Rows = detail::FilterRows<S, T, M>;
  const detail::TripletMessageRed<S, M, detail::PermItems<M>, Rows> red{{kj_perm, kj_ptr}, aggbar,
                                                                    Rows{S1, w.p, w.pt, sh}, ji, Xbar};
  detail::filter_reduce<Mode>(exec, "hydragnn::Triplet::filter_message_backward_x", red,
                              detail::triplet_prefetch_ahead);
}

}  // namespace kernels
}  // namespace hydragnn
