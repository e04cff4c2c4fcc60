// SPDX-License-Identifier: BSD-3-Clause
// Compiler pragmas.
//
// HYDRAGNN_UNROLL: ask the compiler to unroll the next loop completely (its trip count must be a
// compile-time constant), so that fixed-size accumulator arrays live in registers. One spelling per
// compiler (nvcc and hipcc in both their host and device passes); nothing where none is known.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__) || defined(__clang__)
#define HYDRAGNN_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define HYDRAGNN_UNROLL _Pragma("GCC unroll 32")
#else
#define HYDRAGNN_UNROLL
#endif

// HYDRAGNN_EXEC_CHECK_DISABLE: before a __host__ __device__ template that calls a callable it is
// given (host code passes host lambdas, device code device ones); nvcc would otherwise warn about a
// host function called from a host-device one for every host instantiation.
#if defined(__CUDACC__)
#define HYDRAGNN_EXEC_CHECK_DISABLE _Pragma("nv_exec_check_disable")
#else
#define HYDRAGNN_EXEC_CHECK_DISABLE
#endif
