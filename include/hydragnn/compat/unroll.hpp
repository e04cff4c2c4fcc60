// SPDX-License-Identifier: BSD-3-Clause
// HYDRAGNN_UNROLL: ask the compiler to unroll the next loop completely (its trip count must be a
// compile-time constant), so that fixed-size accumulator arrays live in registers. One spelling per
// compiler; nothing where none is known.
#pragma once

#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__) || defined(__clang__)
#define HYDRAGNN_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define HYDRAGNN_UNROLL _Pragma("GCC unroll 32")
#else
#define HYDRAGNN_UNROLL
#endif
