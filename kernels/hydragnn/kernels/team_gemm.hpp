// SPDX-License-Identifier: BSD-3-Clause
// Shared-memory tiled products of the TeamTiled dense ops (kernels/dense.hpp) on GPUs.
//
//   C(m, n) = init(chunk, m, n) + sum_{k in chunk} A(m, k) B(k, n)        k ascending
//
// One team per (k chunk, TM x TN tile of C). The team stages TK-deep slices of A (TM x TK) and B
// (TK x TN) in team scratch, then each of its 16 x 16 threads updates a 4 x 4 register block of
// the tile: rows ty + 16 i, columns tx + 16 j. Every element of C is one thread's sum over its
// chunk's k in ascending order, so with one chunk the result is summed in the order of the other
// modes (bitwise, up to the compiler's contraction of a * b + c into FMA on a GPU); with several
// chunks (the weight gradient over many rows) the caller sums the chunks' partial results in
// ascending chunk order, a fixed order too. No atomics: deterministic on every backend.
//
// Shapes (the caller's views, read through the loaders):
//   forward          A = X (n x in, k = input, k contiguous),  B(k, n) = W(n, k) (k contiguous)
//   backward_input   A = Ybar (k = output, k contiguous),       B(k, n) = W(k, n) (n contiguous)
//   backward_params  A(m, k) = Ybar(k, m) (m contiguous),       B(k, n) = X(k, n) (n contiguous)
// The loaders' layout flags say which index is contiguous in memory, so that the team's loads of a
// slice are coalesced either way; the scratch rows are padded by one element (no bank conflicts).
//
// Execution spaces that run on the host get teams of one thread: that thread runs the 256 threads'
// work one after another (the same tiles, the same sums), so the host tests check the device code's
// indexing and summation order.
#pragma once

#include <hydragnn/core/dual.hpp>
#include <hydragnn/core/types.hpp>
#include <hydragnn/kernels/modes.hpp>

#include <cstddef>
#include <mutex>

namespace hydragnn {
namespace kernels {
namespace detail {

struct TeamGemmShape {
  static constexpr int TM = 64, TN = 64, TK = 16;  ///< tile of C, depth of a staged slice
  static constexpr int TX = 16, TY = 16;           ///< threads: TX over columns, TY over rows
  static constexpr int RM = TM / TY, RN = TN / TX;  ///< register block per thread (4 x 4)
};

/// Which index of an operand is contiguous in memory (selects the coalesced staging order).
enum class Contig { k, mn };

/// C = init + A B over k chunks of `kchunk` (<= 0: one chunk of all K). Loaders: a(m, k) -> SA,
/// b(k, n) -> SB, init(chunk, m, n) -> S; store(chunk, m, n, S) for every m < M, n < N, chunk.
template <class Exec, class S, class SA, class SB, Contig CA, Contig CB, class LA, class LB, class Init, class Store>
void team_gemm(const Exec& exec, const char* label, long M, long N, long K, long kchunk, const LA& a, const LB& b,
               const Init& init, const Store& store) {
  using Sh = TeamGemmShape;
  if (M <= 0 || N <= 0) return;
  if (kchunk <= 0 || kchunk > K) kchunk = K > 0 ? K : 1;
  constexpr bool on_host = Kokkos::SpaceAccessibility<Exec, Kokkos::HostSpace>::accessible;
  constexpr int threads = Sh::TX * Sh::TY;
  constexpr int team = on_host ? 1 : threads;  // threads of a team
  constexpr int VT = on_host ? threads : 1;    // virtual threads each runs
  const long tm = (M + Sh::TM - 1) / Sh::TM, tn = (N + Sh::TN - 1) / Sh::TN;
  const long nch = K > 0 ? (K + kchunk - 1) / kchunk : 1;
  constexpr int lda = Sh::TM + 1, ldb = Sh::TN + 1;  // padded scratch rows
  const std::size_t bytes_a = std::size_t(Sh::TK) * lda * sizeof(SA), bytes_b = std::size_t(Sh::TK) * ldb * sizeof(SB);
  const std::size_t pad_a = (bytes_a + 15) / 16 * 16;
  using Policy = Kokkos::TeamPolicy<Exec>;
  using member = typename Policy::member_type;
  const Policy policy = Policy(exec, tm * tn * nch, team, 1).set_scratch_size(0, Kokkos::PerTeam(pad_a + bytes_b));
  Kokkos::parallel_for(label, policy, KOKKOS_LAMBDA(const member& t) {
    const long item = t.league_rank();
    const long ch = item / (tm * tn), tile = item % (tm * tn);
    const long m0 = (tile / tn) * Sh::TM, n0 = (tile % tn) * Sh::TN;
    const long k0 = ch * kchunk, k1 = k0 + kchunk < K ? k0 + kchunk : K;
    char* base = static_cast<char*>(t.team_shmem().get_shmem(pad_a + bytes_b));
    SA* As = reinterpret_cast<SA*>(base);          // As[k * lda + m]
    SB* Bs = reinterpret_cast<SB*>(base + pad_a);  // Bs[k * ldb + n]
    S acc[VT][Sh::RM][Sh::RN];
    for (int v = 0; v < VT; ++v) {
      const int id = t.team_rank() * VT + v, ty = id / Sh::TX, tx = id % Sh::TX;
      for (int i = 0; i < Sh::RM; ++i)
        for (int j = 0; j < Sh::RN; ++j) {
          const long m = m0 + ty + Sh::TY * i, n = n0 + tx + Sh::TX * j;
          acc[v][i][j] = m < M && n < N ? S(init(ch, m, n)) : S(0);
        }
    }
    for (long kk = k0; kk < k1; kk += Sh::TK) {
      const int kn = k1 - kk < Sh::TK ? int(k1 - kk) : Sh::TK;
      t.team_barrier();  // the previous slice is consumed
      for (int v = 0; v < VT; ++v) {
        const int id = t.team_rank() * VT + v;
        for (int e = id; e < Sh::TK * Sh::TM; e += threads) {
          const int k = CA == Contig::k ? e % Sh::TK : e / Sh::TM, m = CA == Contig::k ? e / Sh::TK : e % Sh::TM;
          As[k * lda + m] = k < kn && m0 + m < M ? SA(a(m0 + m, kk + k)) : SA(0);
        }
        for (int e = id; e < Sh::TK * Sh::TN; e += threads) {
          const int k = CB == Contig::k ? e % Sh::TK : e / Sh::TN, n = CB == Contig::k ? e / Sh::TK : e % Sh::TN;
          Bs[k * ldb + n] = k < kn && n0 + n < N ? SB(b(kk + k, n0 + n)) : SB(0);
        }
      }
      t.team_barrier();  // the slice is staged
      for (int v = 0; v < VT; ++v) {
        const int id = t.team_rank() * VT + v, ty = id / Sh::TX, tx = id % Sh::TX;
        for (int k = 0; k < kn; ++k) {
          SA av[Sh::RM];
          SB bv[Sh::RN];
          for (int i = 0; i < Sh::RM; ++i) av[i] = As[k * lda + ty + Sh::TY * i];
          for (int j = 0; j < Sh::RN; ++j) bv[j] = Bs[k * ldb + tx + Sh::TX * j];
          for (int i = 0; i < Sh::RM; ++i)
            for (int j = 0; j < Sh::RN; ++j) acc[v][i][j] += av[i] * bv[j];
        }
      }
    }
    for (int v = 0; v < VT; ++v) {
      const int id = t.team_rank() * VT + v, ty = id / Sh::TX, tx = id % Sh::TX;
      for (int i = 0; i < Sh::RM; ++i)
        for (int j = 0; j < Sh::RN; ++j) {
          const long m = m0 + ty + Sh::TY * i, n = n0 + tx + Sh::TX * j;
          if (m < M && n < N) store(ch, m, n, acc[v][i][j]);
        }
    }
  });
}

/// A buffer of at least `bytes` in memory space M for the partial sums of chunked reductions
/// (team_gemm's weight gradient): one per memory space, grown (after a fence) when a call needs
/// more, never shrunk, released at Kokkos::finalize. A steady-state step allocates nothing.
/// Kernels that use it run one after another on one execution-space instance; two instances must
/// not run such kernels concurrently.
template <class M>
unsigned char* reduction_scratch(std::size_t bytes) {
  using Buffer = Kokkos::View<unsigned char*, M>;
  // never destroyed (a static destructor could run before a Kokkos::finalize called at exit);
  // the buffer itself goes at finalize
  struct State {
    std::mutex mutex;
    Buffer buf;
    bool hooked = false;
  };
  static State* const s = new State;
  std::lock_guard<std::mutex> lock(s->mutex);
  if (!s->hooked) {
    s->hooked = true;
    Kokkos::push_finalize_hook([] {
      std::lock_guard<std::mutex> l(s->mutex);
      s->buf = Buffer();
      s->hooked = false;
    });
  }
  if (s->buf.extent(0) < bytes) {
    Kokkos::fence();  // kernels still reading the old buffer
    s->buf = Buffer();
    s->buf = Buffer(Kokkos::view_alloc(Kokkos::WithoutInitializing, "hydragnn::TeamGemm::reduction_scratch"), bytes + bytes / 2);
  }
  return s->buf.data();
}

/// Rows summed per team by team_row_sums before the chunks are added in order.
constexpr long params_chunk_rows = 512;

/// add(m, n, sum_k A(m, k) B(k, n)) for every m < M, n < N, with the K rows (a weight gradient's
/// edges or atoms) summed per chunk of params_chunk_rows rows by team_gemm, the chunks' partial sums
/// (param_part: the tangents of a dual) kept in reduction_scratch, then added in ascending chunk order
/// by one thread per (m, n). With K <= params_chunk_rows: the plain sum in k order.
template <class Exec, class S, Contig CA, Contig CB, class LA, class LB, class Add>
void team_row_sums(const Exec& exec, const char* label, const char* label_chunks, long M, long N, long K, const LA& a,
                   const LB& b, const Add& add) {
  using R = real_t<S>;
  if (M <= 0 || N <= 0 || K <= 0) return;
  constexpr long kc = params_chunk_rows;
  const long nch = (K + kc - 1) / kc;
  const std::size_t count = std::size_t(nch) * std::size_t(M) * std::size_t(N);
  const Kokkos::View<R*, mem_t<Exec>, Kokkos::MemoryTraits<Kokkos::Unmanaged>> part(
      reinterpret_cast<R*>(reduction_scratch<mem_t<Exec>>(count * sizeof(R))), count);
  team_gemm<Exec, S, S, S, CA, CB>(
      exec, label, M, N, K, kc, a, b, KOKKOS_LAMBDA(const long, const long, const long) { return S(0); },
      KOKKOS_LAMBDA(const long ch, const long m, const long n, const S& v) { part((ch * M + m) * N + n) = param_part(v); });
  for_each_element<exec_mode::TeamTiled>(exec, label_chunks, M, N, KOKKOS_LAMBDA(const long m, const long n) {
    R acc(0);
    for (long ch = 0; ch < nch; ++ch) acc += part((ch * M + m) * N + n);
    add(m, n, acc);
  });
}

}  // namespace detail
}  // namespace kernels
}  // namespace hydragnn
