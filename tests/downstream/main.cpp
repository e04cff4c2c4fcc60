// SPDX-License-Identifier: BSD-3-Clause
// Downstream smoke test: include installed hydragnn headers, run Kokkos, differentiate exp.
#include <hydragnn/compat/kokkos.hpp>
#include <hydragnn/core/dual.hpp>

#include <cmath>
#include <cstdio>

int main(int argc, char* argv[]) {
  int failures = 0;
  Kokkos::initialize(argc, argv);
  {
    const int n = 8;
    Kokkos::View<double*> value("value", n), deriv("deriv", n);
    Kokkos::parallel_for(
        "downstream_exp", Kokkos::RangePolicy<>(0, n), KOKKOS_LAMBDA(const int i) {
          const hydragnn::Dual<double> x(0.25 * i - 1.0, 1.0);
          const hydragnn::Dual<double> y = hydragnn::math::exp(x);
          value(i) = y.v;
          deriv(i) = y.d;
        });
    auto hv = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), value);
    auto hd = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), deriv);
    for (int i = 0; i < n; ++i) {
      const double want = std::exp(0.25 * i - 1.0);
      if (std::abs(hv(i) - want) > 1e-14 * want || std::abs(hd(i) - want) > 1e-14 * want) {
        std::printf("mismatch at %d: exp=%.17g d/dx=%.17g want %.17g\n", i, hv(i), hd(i), want);
        ++failures;
      }
    }
  }
  Kokkos::finalize();
  if (failures == 0) std::printf("hydragnn downstream: OK\n");
  return failures == 0 ? 0 : 1;
}
