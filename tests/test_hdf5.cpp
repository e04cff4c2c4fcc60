// SPDX-License-Identifier: BSD-3-Clause
// HDF5 structure files (io/hdf5.hpp): 100,000 synthetic structures written and read back equal, field
// by field and bit for bit; per-structure summaries from the file equal those of the frames; random
// access; bad files named in the error.
#include <catch2/catch.hpp>

#include <hydragnn/io/hdf5.hpp>
#include <hydragnn/train/dataset.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <unistd.h>

using namespace hydragnn;

namespace {

/// Structures of 1 to 24 atoms of H, C, O, Si; half periodic (random pbc patterns, a cell), labels
/// present or absent at random, a numeric info key, a per-atom column and a non-numeric info value.
std::vector<Structure> synthetic(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> natoms(1, 24), species(0, 3), coin(0, 1);
  std::uniform_real_distribution<double> u(-5.0, 5.0);
  const int Z[4] = {1, 6, 8, 14};
  std::vector<Structure> out(n);
  for (std::size_t s = 0; s < n; ++s) {
    Structure& f = out[s];
    const int N = natoms(rng);
    f.source = "synthetic:" + std::to_string(s);
    for (int i = 0; i < N; ++i) {
      f.numbers.push_back(Z[species(rng)]);
      f.positions.push_back({u(rng), u(rng), u(rng)});
    }
    if (coin(rng)) {
      f.has_cell = true;
      for (auto& row : f.cell)
        for (double& x : row) x = u(rng);
      for (auto& p : f.pbc) p = coin(rng);
    }
    if (s % 7 != 3) f.energy = u(rng) * 100;
    if (s % 5 != 1) {
      f.forces.resize(std::size_t(N));
      for (auto& v : f.forces) v = {u(rng), u(rng), u(rng)};
    }
    if (s % 3 == 0) {
      std::array<double, 9> st{};
      for (double& x : st) x = u(rng) * 1e-2;
      f.stress = st;
    }
    if (s % 2 == 0) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.17g %.17g", u(rng), u(rng));
      f.info["dipole2"] = buf;
    }
    f.info["config_type"] = "random";  // not numeric: not stored
    if (s % 4 != 2) {
      auto& a = f.arrays["charges"];
      for (int i = 0; i < N; ++i) a.push_back(u(rng));
      f.array_cols["charges"] = 1;
    }
  }
  return out;
}

std::string temp_file(const std::string& tag) {
  return (std::filesystem::temp_directory_path() / ("hydragnn_h5_" + tag + "_" + std::to_string(::getpid()) + ".h5")).string();
}

}  // namespace

TEST_CASE("100,000 synthetic structures: HDF5 round trip, bit for bit", "[hdf5]") {
  const std::size_t S = 100000;
  const std::vector<Structure> frames = synthetic(S, 2026);
  std::vector<int> dataset_of(S);
  for (std::size_t s = 0; s < S; ++s) dataset_of[s] = s < 60000 ? 0 : 1;
  HDF5DatasetMetadata m0, m1;
  m0.name = "first";
  m1.name = "second";
  m0.species = {1, 6, 8, 14};
  m0.reference_energy = {0.5, 1.5, 2.5, 3.5};
  const std::string path = temp_file("roundtrip");
  const auto t0 = std::chrono::steady_clock::now();
  write_structures_hdf5(path, frames, dataset_of, {"first", "second"}, {m0, m1});
  const auto t1 = std::chrono::steady_clock::now();
  const HDF5Structures file(path);
  REQUIRE(file.size() == S);
  CHECK(file.dataset_names() == std::vector<std::string>{"first", "second"});
  std::size_t atoms = 0;
  for (std::size_t s = 0; s < S; ++s) {
    const Structure& a = frames[s];
    const Structure b = file.read(s);
    atoms += a.size();
    REQUIRE(b.numbers == a.numbers);
    REQUIRE(b.positions == a.positions);  // exact doubles
    REQUIRE(b.has_cell == a.has_cell);
    REQUIRE(b.cell == a.cell);
    REQUIRE(b.pbc == a.pbc);
    REQUIRE(b.energy == a.energy);
    REQUIRE(b.forces == a.forces);
    REQUIRE(b.stress == a.stress);
    REQUIRE(file.dataset_of(s) == dataset_of[s]);
    REQUIRE(b.info.count("config_type") == 0);
    REQUIRE(b.info.count("dipole2") == a.info.count("dipole2"));
    if (a.info.count("dipole2")) {
      // the numbers of the value, exact (written with 17 significant digits)
      std::istringstream x(a.info.at("dipole2")), y(b.info.at("dipole2"));
      double xa, xb, ya, yb;
      x >> xa >> xb;
      y >> ya >> yb;
      REQUIRE(xa == ya);
      REQUIRE(xb == yb);
    }
    REQUIRE(b.arrays == a.arrays);
    const StructureSummary p = summarize(a), q = file.summary(s);
    REQUIRE(q.natoms == p.natoms);
    REQUIRE(q.composition == p.composition);
    REQUIRE(q.energy == p.energy);
    REQUIRE(q.force_sq == p.force_sq);
    REQUIRE(q.force_components == p.force_components);
  }
  const auto t2 = std::chrono::steady_clock::now();
  CHECK(file.structures_read() == S);
  CHECK(file.atoms_read() == atoms);
  CHECK(file.num_atoms() == atoms);
  // a rank's shard as runs: the second half in one call (one read per atom dataset)
  std::vector<std::size_t> half(S / 2);
  for (std::size_t k = 0; k < half.size(); ++k) half[k] = S / 2 + k;
  const auto t3 = std::chrono::steady_clock::now();
  const std::vector<Structure> got = file.read_many(half);
  const auto t4 = std::chrono::steady_clock::now();
  std::vector<Structure> each;
  each.reserve(half.size());
  for (std::size_t i : half) each.push_back(file.read(i));
  const auto t5 = std::chrono::steady_clock::now();
  REQUIRE(each.size() == got.size());
  REQUIRE(got.size() == half.size());
  for (std::size_t k = 0; k < half.size(); ++k) {
    REQUIRE(got[k].positions == frames[half[k]].positions);
    REQUIRE(got[k].forces == frames[half[k]].forces);
  }
  std::printf("HDF5 round trip: %zu structures, %zu atoms, %.1f MB, write %.2f s, read %.2f s one by one (with the "
              "checks); half of them (%zu): %.2f s as one run, %.2f s one by one\n",
              S, atoms, double(std::filesystem::file_size(path)) / 1e6, std::chrono::duration<double>(t1 - t0).count(),
              std::chrono::duration<double>(t2 - t1).count(), half.size(), std::chrono::duration<double>(t4 - t3).count(),
              std::chrono::duration<double>(t5 - t4).count());
  std::filesystem::remove(path);
}

TEST_CASE("HDF5: random access reads only the structures asked for", "[hdf5]") {
  const std::vector<Structure> frames = synthetic(500, 7);
  const std::string path = temp_file("random");
  write_structures_hdf5(path, frames, std::vector<int>(frames.size(), 0), {"d"}, {});
  const HDF5Structures file(path);
  std::size_t atoms = 0;
  for (std::size_t s : {499u, 0u, 250u, 17u}) {
    CHECK(file.read(s).positions == frames[s].positions);
    atoms += frames[s].size();
  }
  CHECK(file.structures_read() == 4);
  CHECK(file.atoms_read() == atoms);
  // statistics from the summaries equal those from the frames
  Dataset ds;
  ds.frames = frames;
  std::vector<StructureSummary> ss;
  for (std::size_t s = 0; s < file.size(); ++s) ss.push_back(file.summary(s));
  const SpeciesMap sp = species_of(ds);
  CHECK(species_of(ss).numbers == sp.numbers);
  CHECK(fit_reference_energies(ss, sp) == fit_reference_energies(ds, sp));
  CHECK(energy_scale_of(ss, sp, fit_reference_energies(ss, sp)) == energy_scale_of(ds, sp, fit_reference_energies(ds, sp)));
  std::filesystem::remove(path);
}

TEST_CASE("HDF5: read_many reads runs of consecutive structures in one piece, equal to one-by-one reads", "[hdf5]") {
  const std::vector<Structure> frames = synthetic(300, 11);
  const std::string path = temp_file("runs");
  write_structures_hdf5(path, frames, std::vector<int>(frames.size(), 0), {"d"}, {});
  const HDF5Structures one(path), many(path);
  // unsorted, with runs, a repeat, both ends of the file
  const std::vector<std::size_t> idx{40, 41, 42, 43, 7, 299, 8, 9, 0, 42, 150, 151, 298};
  const std::vector<Structure> got = many.read_many(idx);
  REQUIRE(got.size() == idx.size());
  std::size_t atoms = 0;
  for (std::size_t k = 0; k < idx.size(); ++k) {
    const Structure a = one.read(idx[k]);
    const Structure& b = got[k];
    INFO("structure " << idx[k]);
    CHECK(b.source == a.source);
    CHECK(b.numbers == a.numbers);
    CHECK(b.positions == a.positions);
    CHECK(b.forces == a.forces);
    CHECK(b.has_cell == a.has_cell);
    CHECK(b.cell == a.cell);
    CHECK(b.pbc == a.pbc);
    CHECK(b.energy == a.energy);
    CHECK(b.stress == a.stress);
    CHECK(b.info == a.info);
    CHECK(b.arrays == a.arrays);
    CHECK(b.array_cols == a.array_cols);
    CHECK(b.positions == frames[idx[k]].positions);
  }
  for (std::size_t s : std::set<std::size_t>(idx.begin(), idx.end())) atoms += frames[s].size();
  CHECK(many.structures_read() == 12);  // 42 once
  CHECK(many.atoms_read() == atoms);
  CHECK_THROWS_WITH(many.read_run(299, 301), Catch::Matchers::Contains("structures 299..301 of 300"));
  std::filesystem::remove(path);
}

TEST_CASE("HDF5: a file that is not a structures file is named in the error", "[hdf5]") {
  const std::string text = temp_file("text");
  std::ofstream(text) << "not hdf5\n";
  try {
    HDF5Structures f(text);
    FAIL("a text file opened");
  } catch (const HDF5Error& e) {
    CHECK(std::string(e.what()).find(text) != std::string::npos);
  }
  std::filesystem::remove(text);
  // an HDF5 file without our format attribute
  const std::string other = temp_file("other");
  {
    h5_detail::Handle f(H5Fcreate(other.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
    h5_detail::write_attr_string(f, "format", "something-else");
  }
  try {
    HDF5Structures f(other);
    FAIL("a foreign HDF5 file opened");
  } catch (const HDF5Error& e) {
    CHECK(std::string(e.what()).find("not a hydragnn-structures file") != std::string::npos);
  }
  std::filesystem::remove(other);
}
