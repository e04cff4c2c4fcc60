# SPDX-License-Identifier: BSD-3-Clause
# Find Kokkos (and Kokkos Kernels) and repair what Debian's Trilinos packaging gets wrong:
#  * Kokkos::kokkos carries INTERFACE_INCLUDE_DIRECTORIES "/usr/lib/include" (does not exist);
#    the headers are in ${Kokkos_INCLUDE_DIRS} (/usr/include/trilinos).
#  * There is no imported target for Kokkos Kernels: build hydragnn::kokkoskernels from the
#    variables of KokkosKernelsConfig.cmake.
# This file is installed with HydraGNNConfig.cmake and runs again in downstream projects.
include_guard(GLOBAL)

if(NOT TARGET Kokkos::kokkos)
  find_package(Kokkos REQUIRED)
endif()

get_target_property(_hg_kk_inc Kokkos::kokkos INTERFACE_INCLUDE_DIRECTORIES)
if(_hg_kk_inc)
  set(_hg_fixed "")
  set(_hg_changed OFF)
  foreach(_d IN LISTS _hg_kk_inc)
    if(_d MATCHES "^\\$<" OR EXISTS "${_d}")
      list(APPEND _hg_fixed "${_d}")
    else()
      set(_hg_changed ON)
    endif()
  endforeach()
  if(_hg_changed)
    foreach(_d IN LISTS Kokkos_INCLUDE_DIRS)
      get_filename_component(_d "${_d}" ABSOLUTE)
      list(APPEND _hg_fixed "${_d}")
    endforeach()
    list(REMOVE_DUPLICATES _hg_fixed)
    set_target_properties(Kokkos::kokkos PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_hg_fixed}")
    message(STATUS "HydraGNN: repaired Kokkos::kokkos include directories -> ${_hg_fixed}")
  endif()
endif()

# Kokkos Kernels (optional): a Kokkos 4 install exports Kokkos::kokkoskernels; Debian's does not.
if(NOT TARGET hydragnn::kokkoskernels)
  find_package(KokkosKernels QUIET)
  if(TARGET Kokkos::kokkoskernels)
    add_library(hydragnn::kokkoskernels INTERFACE IMPORTED)
    set_target_properties(hydragnn::kokkoskernels PROPERTIES INTERFACE_LINK_LIBRARIES Kokkos::kokkoskernels)
  elseif(KokkosKernels_FOUND AND KokkosKernels_LIBRARIES)
    set(_hg_kkk_inc "")
    foreach(_d IN LISTS KokkosKernels_INCLUDE_DIRS)
      get_filename_component(_d "${_d}" ABSOLUTE)
      list(APPEND _hg_kkk_inc "${_d}")
    endforeach()
    # A TriBITS (Debian) Kokkos Kernels is only usable with the Kokkos it was built against: its
    # headers must sit next to those of Kokkos::kokkos. With another Kokkos (e.g. a Kokkos 4 in
    # CMAKE_PREFIX_PATH) it would mix two Kokkos versions, so leave hydragnn::kokkoskernels undefined.
    get_target_property(_hg_kk_inc Kokkos::kokkos INTERFACE_INCLUDE_DIRECTORIES)
    set(_hg_kkk_same_kokkos ON)
    foreach(_d IN LISTS _hg_kkk_inc)
      if(NOT _d IN_LIST _hg_kk_inc)
        set(_hg_kkk_same_kokkos OFF)
      endif()
    endforeach()
    if(_hg_kkk_same_kokkos)
      add_library(hydragnn::kokkoskernels INTERFACE IMPORTED)
      set_target_properties(hydragnn::kokkoskernels PROPERTIES
        INTERFACE_INCLUDE_DIRECTORIES "${_hg_kkk_inc}"
        INTERFACE_LINK_LIBRARIES "${KokkosKernels_LIBRARIES};${KokkosKernels_TPL_LIBRARIES};Kokkos::kokkos")
    else()
      message(STATUS "HydraGNN: ignoring Kokkos Kernels at ${KokkosKernels_DIR} "
                     "(built against another Kokkos than ${Kokkos_DIR})")
    endif()
  endif()
endif()
