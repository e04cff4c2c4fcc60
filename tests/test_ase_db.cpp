// SPDX-License-Identifier: BSD-3-Clause
// ASE databases (io/ase_db.hpp) written by ASE itself (tests/make_ase_db.py, run here with the Python
// the build found): the frames of an extxyz file stored by ASE read back bit for bit equal to our
// extxyz reader's frames; a molecule without cell, int64 atomic numbers, a 3x3 stress, a row without
// calculator and key-value pairs; bad files named in the error with the row id.
#include <catch2/catch.hpp>

#include <hydragnn/io/ase_db.hpp>
#include <hydragnn/io/extxyz.hpp>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <unistd.h>

using namespace hydragnn;
using Catch::Matchers::Contains;

namespace {

const std::string kValidate = std::string(HYDRAGNN_SOURCE_DIR) + "/examples/si_sw/validate.extxyz";

/// The databases, written by ASE once per process into a directory of its own (ctest runs the test
/// cases as parallel processes), removed at exit.
struct DbDir {
  std::string path;
  DbDir() {
    path = (std::filesystem::temp_directory_path() / ("hydragnn_ase_db_" + std::to_string(::getpid()))).string();
    const std::string cmd = std::string("\"") + HYDRAGNN_PYTHON + "\" \"" + HYDRAGNN_SOURCE_DIR +
                            "/tests/make_ase_db.py\" \"" + kValidate + "\" \"" + path + "\"";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("failed: " + cmd + " (needs ASE: Debian python3-ase)");
  }
  ~DbDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

const std::string& db_dir() {
  static const DbDir dir;
  return dir.path;
}

std::string error_of(const std::string& path) {
  try {
    read_ase_db(path);
  } catch (const AseDbError& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("ASE database: the frames of an extxyz file stored by ASE read back bit for bit", "[ase_db]") {
  const auto x = read_extxyz(kValidate);
  const auto d = read_ase_db(db_dir() + "/frames.db");
  REQUIRE(x.size() == 30);
  REQUIRE(d.size() == x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    INFO(d[i].source);
    CHECK(d[i].source == db_dir() + "/frames.db:id=" + std::to_string(i + 1));
    CHECK(d[i].numbers == x[i].numbers);
    CHECK(d[i].positions == x[i].positions);
    CHECK(d[i].has_cell == x[i].has_cell);
    CHECK(d[i].cell == x[i].cell);
    CHECK(d[i].pbc == x[i].pbc);
    REQUIRE(d[i].energy.has_value());
    CHECK(*d[i].energy == *x[i].energy);
    CHECK(d[i].forces == x[i].forces);
    REQUIRE(d[i].stress.has_value());  // ASE stores the Voigt 6 of the file's symmetric 3x3
    CHECK(*d[i].stress == *x[i].stress);
  }
}

TEST_CASE("ASE database: no cell, int64 numbers, 3x3 stress, no calculator, key-value pairs", "[ase_db]") {
  const auto d = read_ase_db(db_dir() + "/extras.db");
  REQUIRE(d.size() == 3);
  // the water molecule: no cell, not periodic, energy and forces, key-value pairs as info
  CHECK(d[0].numbers == std::vector<int>{8, 1, 1});
  CHECK(d[0].positions == std::vector<Vec3>{{0.0, 0.0, 0.125}, {0.75, 0.0, -0.5}, {-0.75, 0.0, -0.5}});
  CHECK_FALSE(d[0].has_cell);
  CHECK(d[0].pbc == std::array<bool, 3>{false, false, false});
  CHECK(d[0].energy == -14.25);
  CHECK(d[0].forces == std::vector<Vec3>{{0.0, 0.0, 0.5}, {0.25, 0.0, -0.25}, {-0.25, 0.0, -0.25}});
  CHECK_FALSE(d[0].stress.has_value());
  CHECK(d[0].info.at("config_type") == "water");
  CHECK(d[0].info.at("temperature") == "300.5");
  CHECK(d[0].info.at("index") == "3");
  CHECK(d[0].info.at("relaxed") == "T");
  // copper: int64 numbers (ASE stores int32), mixed pbc, a 3x3 stress kept as 9 values
  CHECK(d[1].numbers == std::vector<int>{29, 29});
  CHECK(d[1].has_cell);
  CHECK(d[1].cell == Mat3{{{3.5, 0.0, 0.0}, {0.0, 3.5, 0.0}, {0.0, 0.0, 2.5}}});
  CHECK(d[1].pbc == std::array<bool, 3>{true, true, false});
  CHECK(d[1].energy == -7.5);
  CHECK(d[1].forces == std::vector<Vec3>(2, Vec3{0.0, 0.0, 0.0}));
  REQUIRE(d[1].stress.has_value());
  CHECK(*d[1].stress == std::array<double, 9>{0.5, 0.125, 0.0, 0.125, -0.25, 0.0, 0.0, 0.0, 1.0});
  CHECK(d[1].info.empty());
  // no calculator: positions only
  CHECK(d[2].numbers == std::vector<int>{14});
  CHECK(d[2].pbc == std::array<bool, 3>{true, true, true});
  CHECK_FALSE(d[2].energy.has_value());
  CHECK(d[2].forces.empty());
  CHECK_FALSE(d[2].stress.has_value());
}

TEST_CASE("ASE database: bad files are named, with the row", "[ase_db]") {
  const std::string dir = db_dir();
  CHECK_THAT(error_of(dir + "/bad.db"),
             Contains(dir + "/bad.db:id=2") && Contains("positions has 5 values for 2 atoms"));
  CHECK_THAT(error_of(dir + "/empty.db"), Contains(dir + "/empty.db") && Contains("no structures"));
  CHECK_THAT(error_of(dir + "/other.db"), Contains(dir + "/other.db") && Contains("not an ASE database"));
  CHECK_THAT(error_of(kValidate), Contains(kValidate) && Contains("not an SQLite file"));
  CHECK_THAT(error_of(dir + "/missing.db"), Contains(dir + "/missing.db: cannot open"));
  CHECK(is_sqlite_file(dir + "/frames.db"));
  CHECK_FALSE(is_sqlite_file(kValidate));
}
