// SPDX-License-Identifier: BSD-3-Clause
// Tests of the extended-XYZ reader/writer (include/hydragnn/io/extxyz.hpp).
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "hydragnn/io/extxyz.hpp"

#ifndef HYDRAGNN_SHARED_DATA_DIR
#define HYDRAGNN_SHARED_DATA_DIR "/work/shared/data"
#endif

using hydragnn::IoError;
using hydragnn::Structure;
using Catch::Matchers::Contains;

namespace {

std::string data_path(const std::string& rel) { return std::string(HYDRAGNN_SHARED_DATA_DIR) + "/" + rel; }

std::vector<Structure> read_text(const std::string& text, const std::string& name = "bad.extxyz") {
  std::istringstream in(text);
  return hydragnn::read_extxyz(in, name);
}

std::uint64_t bits(double v) {
  std::uint64_t u;
  std::memcpy(&u, &v, sizeof(u));
  return u;
}

bool same(double a, double b) { return bits(a) == bits(b); }

/// Bitwise comparison of everything the reader stores (source excluded on request).
void require_identical(const Structure& a, const Structure& b, bool compare_source = false) {
  REQUIRE(a.numbers == b.numbers);
  REQUIRE(a.positions.size() == b.positions.size());
  for (std::size_t i = 0; i < a.positions.size(); ++i)
    for (int d = 0; d < 3; ++d) REQUIRE(same(a.positions[i][d], b.positions[i][d]));
  REQUIRE(a.forces.size() == b.forces.size());
  for (std::size_t i = 0; i < a.forces.size(); ++i)
    for (int d = 0; d < 3; ++d) REQUIRE(same(a.forces[i][d], b.forces[i][d]));
  REQUIRE(a.has_cell == b.has_cell);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) REQUIRE(same(a.cell[r][c], b.cell[r][c]));
  REQUIRE(a.pbc == b.pbc);
  REQUIRE(a.energy.has_value() == b.energy.has_value());
  if (a.energy) REQUIRE(same(*a.energy, *b.energy));
  REQUIRE(a.stress.has_value() == b.stress.has_value());
  if (a.stress)
    for (int k = 0; k < 9; ++k) REQUIRE(same((*a.stress)[k], (*b.stress)[k]));
  REQUIRE(a.info == b.info);
  REQUIRE(a.array_cols == b.array_cols);
  REQUIRE(a.arrays.size() == b.arrays.size());
  for (const auto& kv : a.arrays) {
    auto it = b.arrays.find(kv.first);
    REQUIRE(it != b.arrays.end());
    REQUIRE(kv.second.size() == it->second.size());
    for (std::size_t i = 0; i < kv.second.size(); ++i) REQUIRE(same(kv.second[i], it->second[i]));
  }
  if (compare_source) REQUIRE(a.source == b.source);
}

std::vector<Structure> round_trip(const std::vector<Structure>& frames) {
  std::ostringstream out;
  hydragnn::write_extxyz(out, frames);
  return read_text(out.str(), "roundtrip.extxyz");
}

// A minimal valid frame, used as the base of the malformed cases.
const char* kGood =
    "2\n"
    "Properties=species:S:1:pos:R:3:forces:R:3 energy=-1.5 pbc=\"F F F\"\n"
    "H 0.0 0.0 0.0 0.1 0.2 0.3\n"
    "O 0.0 0.0 0.96 -0.1 -0.2 -0.3\n";

}  // namespace

TEST_CASE("element table", "[extxyz]") {
  REQUIRE(hydragnn::atomic_number("H") == 1);
  REQUIRE(hydragnn::atomic_number("C") == 6);
  REQUIRE(hydragnn::atomic_number("Si") == 14);
  REQUIRE(hydragnn::atomic_number("Cu") == 29);
  REQUIRE(hydragnn::atomic_number("Pu") == 94);
  REQUIRE(hydragnn::atomic_number("Og") == 118);
  for (int z = 1; z <= 118; ++z) REQUIRE(hydragnn::atomic_number(hydragnn::chemical_symbol(z)) == z);
  REQUIRE(std::string(hydragnn::chemical_symbol(8)) == "O");
  REQUIRE_THROWS_AS(hydragnn::atomic_number("Xx"), IoError);
  REQUIRE_THROWS_AS(hydragnn::atomic_number("X"), IoError);
  REQUIRE_THROWS_AS(hydragnn::atomic_number("cu"), IoError);
  REQUIRE_THROWS_AS(hydragnn::atomic_number(""), IoError);
  REQUIRE_THROWS_AS(hydragnn::chemical_symbol(0), IoError);
  REQUIRE_THROWS_AS(hydragnn::chemical_symbol(119), IoError);
}

TEST_CASE("read rMD17 uracil", "[extxyz][data]") {
  const std::string path = data_path("real/rmd17/uracil_train_01.extxyz");
  const auto t0 = std::chrono::steady_clock::now();
  const auto frames = hydragnn::read_extxyz(path);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  WARN("parsed uracil_train_01.extxyz (1000 frames) in " << seconds * 1e3 << " ms");
  CHECK(seconds < 1.0);

  REQUIRE(frames.size() == 1000);
  for (const auto& f : frames) {
    REQUIRE(f.size() == 12);
    REQUIRE(f.positions.size() == 12);
    REQUIRE(f.forces.size() == 12);
    REQUIRE(f.energy.has_value());
    REQUIRE_FALSE(f.has_cell);
    REQUIRE(f.pbc == std::array<bool, 3>{false, false, false});
    REQUIRE_FALSE(f.stress.has_value());
    REQUIRE(f.arrays.empty());
  }
  const Structure& f0 = frames[0];
  REQUIRE(*f0.energy == -11266.68267006);
  REQUIRE(*f0.energy == std::strtod("-11266.68267006", nullptr));  // same literal, parsed at run time
  REQUIRE(f0.numbers[0] == 6);
  REQUIRE(f0.positions[0][0] == 1.68753633);
  REQUIRE(f0.positions[0][1] == 0.19594499);
  REQUIRE(f0.positions[0][2] == -0.07569104);
  REQUIRE(f0.forces[0][0] == -0.31199301);
  REQUIRE(f0.forces[0][1] == -1.16021569);
  REQUIRE(f0.forces[0][2] == -0.11119148);
  // C C N C N C O O H H H H
  REQUIRE(f0.numbers == std::vector<int>{6, 6, 7, 6, 7, 6, 8, 8, 1, 1, 1, 1});
  REQUIRE(f0.positions[11][2] == -0.07865834);
  REQUIRE(f0.cell == hydragnn::Mat3{});
  REQUIRE(f0.info.at("md17_index") == "89942");
  REQUIRE(f0.info.at("config_type") == "rmd17_uracil");
  REQUIRE(f0.info.size() == 2);
  REQUIRE(f0.source == path + ":1");
  REQUIRE(frames[1].source == path + ":15");
  REQUIRE(*frames[1].energy == -11266.34001225);
  REQUIRE(frames[999].source == path + ":" + std::to_string(999 * 14 + 1));
}

TEST_CASE("read mlearn Si (triclinic)", "[extxyz][data]") {
  const auto frames = hydragnn::read_extxyz(data_path("real/mlearn/Si_training.extxyz"));
  REQUIRE(frames.size() == 214);
  const Structure& f = frames[0];
  REQUIRE(f.size() == 63);
  REQUIRE(f.has_cell);
  REQUIRE(f.pbc == std::array<bool, 3>{true, true, true});
  const hydragnn::Mat3 cell{{{14.22366000, 5.59192100, 15.55731400},
                             {0.00000000, 9.05593500, 0.27217900},
                             {0.00000000, 0.00000000, 9.17819400}}};
  REQUIRE(f.cell == cell);
  REQUIRE(*f.energy == -295.49753016);
  REQUIRE(f.numbers[0] == 14);
  REQUIRE(f.positions[0] == hydragnn::Vec3{0.29508405, 9.03355219, 4.74853937});
  // Not wrapped: z = 21.49 exceeds the c-vector's z of 9.18.
  REQUIRE(f.positions[1][2] == 21.49173593);
  REQUIRE_FALSE(f.stress.has_value());
  REQUIRE(f.info.at("config_type") == "Vacancy");
  REQUIRE(f.info.at("virial_stress_kbar") ==
          "-6.58094686 -9.63365488 -2.75897261 9.08682588 -1.60618898 -5.41948494");
  for (const auto& g : frames) {
    REQUIRE(g.has_cell);
    REQUIRE(g.pbc == std::array<bool, 3>{true, true, true});
    REQUIRE(g.forces.size() == g.size());
  }
}

TEST_CASE("read ASE-written sample", "[extxyz][data]") {
  const auto frames = hydragnn::read_extxyz(data_path("samples/ase322_emt_written.extxyz"));
  REQUIRE(frames.size() == 2);

  const Structure& a = frames[0];
  REQUIRE(a.numbers == std::vector<int>{29, 29, 29, 29});
  REQUIRE(a.has_cell);
  REQUIRE(a.cell == hydragnn::Mat3{{{3.61, 0, 0}, {0, 3.61, 0}, {0, 0, 3.61}}});
  REQUIRE(a.pbc == std::array<bool, 3>{true, true, true});
  REQUIRE(*a.energy == -0.015905095224606924);
  REQUIRE(a.info.at("free_energy") == "-0.015905095224606924");
  REQUIRE(a.info.at("config_type") == "demo");
  REQUIRE(a.info.size() == 2);
  REQUIRE(a.stress.has_value());
  REQUIRE((*a.stress)[0] == 0.013151382015264394);
  REQUIRE((*a.stress)[1] == 0.00042049791083479006);
  REQUIRE((*a.stress)[3] == 0.00042049791083479006);
  REQUIRE((*a.stress)[8] == 0.013198694333281583);
  REQUIRE(a.array_cols.at("energies") == 1);
  REQUIRE(a.arrays.at("energies") == std::vector<double>{-0.00437084, -0.00412798, -0.00357991, -0.00382637});
  REQUIRE(a.forces[1] == hydragnn::Vec3{0.13723504, -0.12500314, 0.07279520});
  REQUIRE(a.positions[0] == hydragnn::Vec3{0.01624345, -0.00611756, -0.00528172});

  const Structure& b = frames[1];
  REQUIRE(b.numbers == std::vector<int>{1, 1, 8});
  REQUIRE_FALSE(b.has_cell);
  REQUIRE(b.pbc == std::array<bool, 3>{false, false, false});
  REQUIRE(*b.energy == 3.1172531843058);
  REQUIRE_FALSE(b.stress.has_value());
  REQUIRE(b.arrays.at("energies")[2] == 0.77240516);
  REQUIRE(b.source == data_path("samples/ase322_emt_written.extxyz") + ":7");
}

TEST_CASE("read every shared extxyz file", "[extxyz][data]") {
  struct Expect {
    const char* rel;
    std::size_t frames, atoms;
  };
  const Expect files[] = {
      {"real/mlearn/Cu_test.extxyz", 31, 3178},        {"real/mlearn/Ge_test.extxyz", 25, 1568},
      {"real/mlearn/Ge_training.extxyz", 228, 14072},  {"real/mlearn/Li_test.extxyz", 29, 1320},
      {"real/mlearn/Li_training.extxyz", 241, 11576},  {"real/mlearn/Mo_test.extxyz", 23, 1189},
      {"real/mlearn/Mo_training.extxyz", 194, 10087},  {"real/mlearn/Ni_test.extxyz", 31, 3158},
      {"real/mlearn/Si_test.extxyz", 25, 1525},        {"real/mlearn/Si_training.extxyz", 214, 13233},
      {"real/rmd17/aspirin_test_01.extxyz", 1000, 21000}, {"real/rmd17/aspirin_train_01.extxyz", 1000, 21000},
      {"real/rmd17/ethanol_test_01.extxyz", 1000, 9000},  {"real/rmd17/ethanol_train_01.extxyz", 1000, 9000},
      {"real/rmd17/uracil_test_01.extxyz", 1000, 12000},  {"real/rmd17/uracil_train_01.extxyz", 1000, 12000},
      {"samples/ase322_emt_written.extxyz", 2, 7},     {"samples/cuni_100.extxyz", 100, 8740},
      {"samples/si_100.extxyz", 100, 8500},
  };
  for (const auto& e : files) {
    INFO(e.rel);
    const auto frames = hydragnn::read_extxyz(data_path(e.rel));
    REQUIRE(frames.size() == e.frames);
    std::size_t atoms = 0;
    for (const auto& f : frames) {
      atoms += f.size();
      REQUIRE(f.energy.has_value());
      REQUIRE(f.forces.size() == f.size());
    }
    REQUIRE(atoms == e.atoms);
    // Real data survive a write/read cycle bitwise.
    const auto again = round_trip(frames);
    REQUIRE(again.size() == frames.size());
    for (std::size_t i = 0; i < frames.size(); ++i) require_identical(frames[i], again[i]);
  }
  // cuni_100 carries a 9-value stress and extra info keys.
  const auto cuni = hydragnn::read_extxyz(data_path("samples/cuni_100.extxyz"));
  REQUIRE(cuni[0].stress.has_value());
  REQUIRE((*cuni[0].stress)[0] == -1.2104173330e-01);
  REQUIRE(cuni[0].info.at("system") == "cuni");
  REQUIRE(cuni[0].info.at("temperature") == "1171");
  REQUIRE(cuni[0].cell[2] == hydragnn::Vec3{-0.0874390000, -0.1319440000, 10.3520573821});
}

TEST_CASE("comment-line syntax variants", "[extxyz]") {
  SECTION("defaults, bare keys, spaces around '=', quoting, lowercase lattice") {
    const auto fr = read_text(
        "1\n"
        "lattice=\"2 0 0 0 3 0 0 0 4\" flag  name = \"two words\" q='single \\' quote' "
        "esc=\"a \\\"b\\\" c\\\\d\" br={1 2 3} arr=[1, 2, 3] free_energy=-3.5\n"
        "He 5.0 -1.0 9.0\n");
    REQUIRE(fr.size() == 1);
    const auto& s = fr[0];
    REQUIRE(s.has_cell);
    REQUIRE(s.cell == hydragnn::Mat3{{{2, 0, 0}, {0, 3, 0}, {0, 0, 4}}});
    REQUIRE(s.pbc == std::array<bool, 3>{true, true, true});  // Lattice present => TTT
    REQUIRE(s.positions[0] == hydragnn::Vec3{5.0, -1.0, 9.0});  // not wrapped
    REQUIRE(s.numbers == std::vector<int>{2});
    REQUIRE(s.forces.empty());
    REQUIRE_FALSE(s.energy.has_value());  // only `energy` sets the energy
    REQUIRE(s.info.at("free_energy") == "-3.5");
    REQUIRE(s.info.at("flag") == "T");
    REQUIRE(s.info.at("name") == "two words");
    REQUIRE(s.info.at("q") == "single ' quote");
    REQUIRE(s.info.at("esc") == "a \"b\" c\\d");
    REQUIRE(s.info.at("br") == "1 2 3");
    REQUIRE(s.info.at("arr") == "[1, 2, 3]");
    REQUIRE(s.info.count("lattice") == 0);
  }
  SECTION("Z column, Voigt stress, pbc spellings, I/L/S extra columns, CRLF") {
    const auto fr = read_text(
        "2\r\n"
        "Properties=Z:I:1:pos:R:3:tags:I:1:fixed:L:3:label:S:1:m:R:2 stress=\"1 2 3 4 5 6\" "
        "pbc=\"True false 1\" energy=+2.5e0\r\n"
        "8 0 0 0 7 T F F lbl1 1.5 -2\r\n"
        "1 0 0 1 -3 F True 0 lbl2 2.5e-3 1e-400\r\n"
        "\r\n\n");
    REQUIRE(fr.size() == 1);
    const auto& s = fr[0];
    REQUIRE(s.numbers == std::vector<int>{8, 1});
    REQUIRE(s.pbc == std::array<bool, 3>{true, false, true});
    REQUIRE_FALSE(s.has_cell);
    REQUIRE(*s.energy == 2.5);
    // Voigt xx yy zz yz xz xy -> row-major 3x3.
    REQUIRE(*s.stress == std::array<double, 9>{1, 6, 5, 6, 2, 4, 5, 4, 3});
    REQUIRE(s.arrays.at("tags") == std::vector<double>{7, -3});
    REQUIRE(s.array_cols.at("tags") == 1);
    REQUIRE(s.arrays.at("fixed") == std::vector<double>{1, 0, 0, 0, 1, 0});
    REQUIRE(s.array_cols.at("fixed") == 3);
    REQUIRE(s.arrays.at("m") == std::vector<double>{1.5, -2, 2.5e-3, 0.0});  // 1e-400 underflows to 0
    REQUIRE(s.arrays.count("label") == 0);  // string columns other than species are ignored
    REQUIRE(s.positions[1] == hydragnn::Vec3{0, 0, 1});
  }
  SECTION("species and Z together must agree") {
    REQUIRE(read_text("1\nProperties=species:S:1:Z:I:1:pos:R:3\nC 6 0 0 0\n")[0].numbers[0] == 6);
    REQUIRE_THROWS_WITH(read_text("1\nProperties=species:S:1:Z:I:1:pos:R:3\nC 7 0 0 0\n"),
                        Contains("bad.extxyz:3:") && Contains("disagrees"));
  }
  SECTION("single pbc value and explicit pbc without Lattice") {
    REQUIRE(read_text("1\npbc=T\nH 0 0 0\n")[0].pbc == std::array<bool, 3>{true, true, true});
    REQUIRE(read_text("1\nLattice=\"1 0 0 0 1 0 0 0 1\" pbc=\"F F T\"\nH 0 0 0\n")[0].pbc ==
            std::array<bool, 3>{false, false, true});
  }
  SECTION("empty input gives no frames; trailing blank lines are fine") {
    REQUIRE(read_text("").empty());
    REQUIRE(read_text(std::string(kGood) + "\n\n   \n").size() == 1);
    REQUIRE(read_text(std::string(kGood) + kGood).size() == 2);
  }
}

TEST_CASE("round trip write -> read is bitwise exact", "[extxyz]") {
  std::vector<Structure> frames(3);

  Structure& a = frames[0];
  a.numbers = {1, 8, 92, 94};
  a.positions = {{0.1, -0.0, 1e-310}, {3.141592653589793, 2.718281828459045, -1.0 / 3.0},
                 {1e300, -2.2250738585072014e-308, 123456789.123456789},
                 {0.30000000000000004, 5e-324, -7.0}};
  a.forces = {{1.0 / 7.0, -2.0 / 9.0, 0.0}, {1e-12, 1e12, -0.5}, {4.9e-324, 1.7976931348623157e308, 0.2},
              {-0.1, 0.1, 0.7}};
  a.has_cell = true;
  a.cell = {{{10.1, 0.2, 0.3}, {-1.0 / 3.0, 9.9, 0.0}, {0.5, 0.25, 11.000000000000002}}};
  a.pbc = {false, false, true};
  a.energy = -11266.68267006;
  a.stress = std::array<double, 9>{0.1, 0.2, 0.3, 0.2, 0.5, 0.6, 0.3, 0.6, 1.0 / 3.0};
  a.info = {{"config_type", "bulk"},
            {"comment", "a value with spaces"},
            {"quoted", "he said \"hi\" \\ bye"},
            {"empty", ""},
            {"eq", "a=b"},
            {"brackets", "[1, 2]"},
            {"T_flag", "T"},
            {"virial_stress_kbar", "1 2 3 4 5 6"}};
  a.arrays["energies"] = {-0.1, -0.2, -0.3, 1.0 / 3.0};
  a.array_cols["energies"] = 1;
  a.arrays["dipole"] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0.1};
  a.array_cols["dipole"] = 3;
  a.arrays["weird"] = {std::numeric_limits<double>::infinity(), -0.0, 1.0, 2.0};
  a.array_cols["weird"] = 1;

  Structure& b = frames[1];  // molecule: no cell, no forces, no energy
  b.numbers = {6};
  b.positions = {{1.5, 2.5, -3.5}};
  b.pbc = {false, false, false};

  Structure& c = frames[2];  // periodic in x and y only, outside-cell position
  c.numbers = {14, 14};
  c.positions = {{-5.0, 20.0, 0.1}, {1.0, 1.0, 1.0}};
  c.forces = {{0, 0, 0}, {-0.0, 0, 0}};
  c.has_cell = true;
  c.cell = {{{5.43, 0, 0}, {0, 5.43, 0}, {0, 0, 20}}};
  c.pbc = {true, true, false};
  c.energy = 0.0;
  c.info["note"] = "x y";

  const auto back = round_trip(frames);
  REQUIRE(back.size() == 3);
  for (std::size_t i = 0; i < frames.size(); ++i) require_identical(frames[i], back[i]);
  REQUIRE(back[1].source == "roundtrip.extxyz:7");

  // Re-writing the read frames reproduces the same text.
  std::ostringstream s1, s2;
  hydragnn::write_extxyz(s1, frames);
  hydragnn::write_extxyz(s2, back);
  REQUIRE(s1.str() == s2.str());

  SECTION("atomic write to a path") {
    const std::string path = "/tmp/hydragnn_test_extxyz_roundtrip.extxyz";
    std::remove(path.c_str());
    hydragnn::write_extxyz(path, frames);
    REQUIRE_FALSE(std::ifstream(path + ".tmp").good());
    const auto from_file = hydragnn::read_extxyz(path);
    REQUIRE(from_file.size() == 3);
    for (std::size_t i = 0; i < frames.size(); ++i) require_identical(frames[i], from_file[i]);
    REQUIRE(from_file[2].source == path + ":10");
    // Overwrite in place.
    hydragnn::write_extxyz(path, std::vector<Structure>{b});
    REQUIRE(hydragnn::read_extxyz(path).size() == 1);
    std::remove(path.c_str());
    REQUIRE_THROWS_WITH(hydragnn::write_extxyz("/nonexistent_dir_hydragnn/x.extxyz", frames),
                        Contains("/nonexistent_dir_hydragnn/x.extxyz.tmp"));
  }
}

TEST_CASE("writer rejects unrepresentable frames", "[extxyz]") {
  Structure s;
  s.numbers = {1};
  s.positions = {{0, 0, 0}};
  std::ostringstream out;
  REQUIRE_NOTHROW(hydragnn::write_extxyz(out, {s}));

  Structure empty;
  REQUIRE_THROWS_AS(hydragnn::write_extxyz(out, {empty}), IoError);
  Structure bad = s;
  bad.positions.push_back({1, 1, 1});
  REQUIRE_THROWS_WITH(hydragnn::write_extxyz(out, {bad}), Contains("positions"));
  bad = s;
  bad.forces = {{0, 0, 0}, {0, 0, 0}};
  REQUIRE_THROWS_WITH(hydragnn::write_extxyz(out, {bad}), Contains("forces"));
  bad = s;
  bad.numbers[0] = 0;
  REQUIRE_THROWS_WITH(hydragnn::write_extxyz(out, {bad}), Contains("atomic number"));
  bad = s;
  bad.positions[0][1] = std::nan("");
  REQUIRE_THROWS_WITH(hydragnn::write_extxyz(out, {bad}), Contains("non-finite"));
  bad = s;
  bad.info["energy"] = "1";
  REQUIRE_THROWS_WITH(hydragnn::write_extxyz(out, {bad}), Contains("reserved"));
  bad = s;
  bad.info["bad key"] = "1";
  REQUIRE_THROWS_AS(hydragnn::write_extxyz(out, {bad}), IoError);
  bad = s;
  bad.info["k"] = "line\nbreak";
  REQUIRE_THROWS_WITH(hydragnn::write_extxyz(out, {bad}), Contains("line break"));
  bad = s;
  bad.arrays["q"] = {1, 2};
  bad.array_cols["q"] = 1;
  REQUIRE_THROWS_WITH(hydragnn::write_extxyz(out, {bad}), Contains("array 'q'"));
  bad = s;
  bad.arrays["pos"] = {1};
  bad.array_cols["pos"] = 1;
  REQUIRE_THROWS_WITH(hydragnn::write_extxyz(out, {bad}), Contains("reserved"));
  bad = s;
  bad.has_cell = true;  // all-zero cell
  REQUIRE_THROWS_WITH(hydragnn::write_extxyz(out, {bad}), Contains("degenerate"));
}

TEST_CASE("malformed input gives IoError with file and line", "[extxyz][errors]") {
  // Each case: text, expected "file:line:" prefix and a fragment of the explanation.
  struct Case {
    const char* what;
    std::string text;
    const char* where;
    const char* message;
  };
  const std::string good(kGood);
  const std::string header = "2\nProperties=species:S:1:pos:R:3:forces:R:3 energy=-1.5\n";
  const std::vector<Case> cases = {
      {"too few columns", header + "H 0 0 0 1 2 3\nO 0 1 1 2\n", "bad.extxyz:4:",
       "expected 7 columns per Properties=species:S:1:pos:R:3:forces:R:3, got 5"},
      {"too many columns", header + "H 0 0 0 1 2 3 4\nO 0 0 1 1 2 3\n", "bad.extxyz:3:",
       "expected 7 columns"},
      {"non-numeric position", header + "H 0 abc 0 1 2 3\nO 0 0 1 1 2 3\n", "bad.extxyz:3:",
       "cannot parse 'abc' as a real number in column pos"},
      {"trailing garbage in a number", header + "H 0 0 0 1 2 3\nO 0 0 1.0x 1 2 3\n", "bad.extxyz:4:",
       "cannot parse '1.0x' as a real number in column pos"},
      {"non-numeric force", header + "H 0 0 0 1 2 3\nO 0 0 1 1 - 3\n", "bad.extxyz:4:",
       "as a real number in column forces"},
      {"NaN position", header + "H 0 nan 0 1 2 3\nO 0 0 1 1 2 3\n", "bad.extxyz:3:",
       "non-finite value 'nan' in column pos"},
      {"Inf force", header + "H 0 0 0 1 2 3\nO 0 0 1 1 -inf 3\n", "bad.extxyz:4:",
       "non-finite value '-inf' in column forces"},
      {"overflowing position", header + "H 0 0 1e999 1 2 3\nO 0 0 1 1 2 3\n", "bad.extxyz:3:",
       "non-finite value '1e999' in column pos"},
      {"NaN energy", "1\nenergy=NaN\nH 0 0 0\n", "bad.extxyz:2:", "non-finite value 'NaN' in energy"},
      {"non-numeric energy", "1\nenergy=high\nH 0 0 0\n", "bad.extxyz:2:",
       "cannot parse 'high' as a real number in energy"},
      {"Inf in Lattice", "1\nLattice=\"1 0 0 0 1 0 0 0 inf\"\nH 0 0 0\n", "bad.extxyz:2:",
       "non-finite value 'inf' in Lattice"},
      {"atom count not an integer", "two\nenergy=1\nH 0 0 0\n", "bad.extxyz:1:",
       "expected the number of atoms (a positive integer), got 'two'"},
      {"atom count real", "1.5\nenergy=1\nH 0 0 0\n", "bad.extxyz:1:", "got '1.5'"},
      {"atom count negative", "-1\nenergy=1\nH 0 0 0\n", "bad.extxyz:1:", "must be positive"},
      {"atom count with extra text", "1 atoms\nenergy=1\nH 0 0 0\n", "bad.extxyz:1:", "got '1 atoms'"},
      {"empty frame", good + "0\nenergy=1\n", "bad.extxyz:5:", "empty frame (0 atoms)"},
      {"file ends inside a frame", good + "3\nenergy=1\nH 0 0 0\n", "bad.extxyz:5:",
       "frame declares 3 atoms but the file ends after 1 atom line"},
      {"file ends before comment", good + "3\n", "bad.extxyz:5:", "file ends before the comment line"},
      {"count too large runs into next frame", "3\nenergy=1\nH 0 0 0\nH 0 0 1\n2\nenergy=1\nH 0 0 0\nH 1 0 0\n",
       "bad.extxyz:5:", "expected 4 columns per Properties=species:S:1:pos:R:3, got 1"},
      {"count too small", "1\nenergy=1\nH 0 0 0\nH 0 0 1\n1\nenergy=1\nH 0 0 0\n", "bad.extxyz:4:",
       "expected the number of atoms (a positive integer), got 'H 0 0 1'"},
      {"blank line between frames", good + "\n" + good, "bad.extxyz:5:", "blank line"},
      {"blank atom line", "2\nenergy=1\nH 0 0 0\n\nH 0 0 1\n", "bad.extxyz:4:",
       "blank line where atom 2 of 2"},
      {"unknown symbol", good + "1\nenergy=1\nXx 0 0 0\n", "bad.extxyz:7:",
       "unknown chemical symbol 'Xx' in column species"},
      {"Lattice with 8 values", "1\nLattice=\"1 0 0 0 1 0 0 0\"\nH 0 0 0\n", "bad.extxyz:2:",
       "Lattice must have 9 values, got 8"},
      {"degenerate Lattice", "1\nLattice=\"1 0 0 0 1 0 2 2 0\"\nH 0 0 0\n", "bad.extxyz:2:",
       "degenerate (zero volume)"},
      {"zero Lattice", "1\nLattice=\"0 0 0 0 0 0 0 0 0\"\nH 0 0 0\n", "bad.extxyz:2:", "degenerate"},
      {"stress with 7 values", "1\nstress=\"1 2 3 4 5 6 7\"\nH 0 0 0\n", "bad.extxyz:2:",
       "stress must have 6 (Voigt) or 9 values, got 7"},
      {"missing pos column", "1\nProperties=species:S:1:forces:R:3\nH 0 0 0\n", "bad.extxyz:2:",
       "missing pos column"},
      {"pos with wrong width", "1\nProperties=species:S:1:pos:R:2\nH 0 0\n", "bad.extxyz:2:",
       "column pos must be R:3"},
      {"bad Properties type", "1\nProperties=species:S:1:pos:X:3\nH 0 0 0\n", "bad.extxyz:2:",
       "unknown type 'X'"},
      {"bad Properties arity", "1\nProperties=species:S:1:pos:R\nH 0 0 0\n", "bad.extxyz:2:",
       "name:type:ncols triples"},
      {"missing species column", "1\nProperties=pos:R:3\n0 0 0\n", "bad.extxyz:2:", "missing species"},
      {"bad pbc", "1\npbc=\"T T maybe\"\nH 0 0 0\n", "bad.extxyz:2:", "cannot parse 'maybe' as a logical"},
      {"pbc wrong count", "1\npbc=\"T T\"\nH 0 0 0\n", "bad.extxyz:2:", "pbc must have 3 values"},
      {"unterminated quote", "1\nname=\"open value\nH 0 0 0\n", "bad.extxyz:2:", "unterminated \""},
      {"duplicate key", "1\nenergy=1 energy=2\nH 0 0 0\n", "bad.extxyz:2:", "duplicate key 'energy'"},
      {"key without value", "1\nenergy=\nH 0 0 0\n", "bad.extxyz:2:", "missing value for key 'energy'"},
      {"bad integer column", "1\nProperties=species:S:1:pos:R:3:tag:I:1\nH 0 0 0 1.5\n", "bad.extxyz:3:",
       "cannot parse '1.5' as an integer in column tag"},
      {"bad logical column", "1\nProperties=species:S:1:pos:R:3:fix:L:1\nH 0 0 0 yes\n", "bad.extxyz:3:",
       "cannot parse 'yes' as a logical (T/F) in column fix"},
      {"bad Z", "1\nProperties=Z:I:1:pos:R:3\n200 0 0 0\n", "bad.extxyz:3:", "out of range"},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    REQUIRE_THROWS_AS(read_text(c.text), IoError);
    REQUIRE_THROWS_WITH(read_text(c.text), Contains(c.where) && Contains(c.message));
  }

  SECTION("error in a later frame of a real-looking file names that line") {
    std::string text;
    for (int k = 0; k < 3; ++k) text += kGood;
    text += "2\nenergy=1\nH 0 0 0\nO 0 0 x\n";
    REQUIRE_THROWS_WITH(read_text(text, "uracil.extxyz"),
                        Contains("uracil.extxyz:16:") && Contains("cannot parse 'x' as a real number in column pos"));
  }

  SECTION("missing file") {
    const std::string path = "/tmp/hydragnn_no_such_dir/missing.extxyz";
    REQUIRE_THROWS_AS(hydragnn::read_extxyz(path), IoError);
    REQUIRE_THROWS_WITH(hydragnn::read_extxyz(path), Contains(path));
  }

  SECTION("malformed file on disk uses the path in messages") {
    const std::string path = "/tmp/hydragnn_test_extxyz_bad.extxyz";
    {
      std::ofstream f(path);
      f << kGood << "2\nLattice=\"1 2 3\"\nH 0 0 0\nH 0 0 0\n";
    }
    REQUIRE_THROWS_WITH(hydragnn::read_extxyz(path), Contains(path + ":6:") && Contains("Lattice must have 9 values"));
    std::remove(path.c_str());
  }
}
