// SPDX-License-Identifier: BSD-3-Clause
// Catch2 test runner entry point shared by all test sources.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
