// SPDX-License-Identifier: BSD-3-Clause
// Structures of an ASE database in SQLite (ase.db, `.db` files; ASE's schema versions 5-9, the ones
// ASE >= 3.17 writes), read straight from the file through the SQLite C API, without Python.
//
//   systems.numbers    BLOB  int32 [n]      (ASE stores int64 arrays as int32)
//   systems.positions  BLOB  float64 [n,3]
//   systems.cell       BLOB  float64 [3,3]  rows a, b, c; all zero: no cell
//   systems.pbc        INTEGER              bits 1, 2, 4 = periodic along a, b, c
//   systems.energy     REAL                 NULL: no energy
//   systems.forces     BLOB  float64 [n,3]  NULL: no forces
//   systems.stress     BLOB  float64 [6] (Voigt xx yy zz yz xz xy, ASE's sign) or [3,3]; NULL: none
//   systems.key_value_pairs  TEXT (JSON)    numbers, strings and booleans -> Structure::info
//
// Blobs are little-endian (ASE byte-swaps on big-endian hosts); they are decoded byte by byte, so
// the reader is endian-independent. Rows are read in id order. Every error names the file and the
// row id. Needs <sqlite3.h> and libsqlite3 (Debian: libsqlite3-dev); the CLI uses it in `hydragnn
// convert` and for Dataset.format "ase-db".
#pragma once

#include <hydragnn/core/structure.hpp>
#include <hydragnn/io/extxyz.hpp>  // cell_degenerate

#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace hydragnn {

struct AseDbError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace ase_db_detail {
/// Whether the stream begins with SQLite's file header ("SQLite format 3\0").
inline bool sqlite_header(std::istream& in) {
  char head[16] = {};
  return in.read(head, sizeof head) && std::memcmp(head, "SQLite format 3", 16) == 0;
}
}  // namespace ase_db_detail

/// True when `path` begins with SQLite's file header.
inline bool is_sqlite_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return in && ase_db_detail::sqlite_header(in);
}

namespace ase_db_detail {

inline std::uint64_t le_bytes(const unsigned char* p, int n) {
  std::uint64_t v = 0;
  for (int k = n - 1; k >= 0; --k) v = (v << 8) | p[k];
  return v;
}
inline double le_double(const unsigned char* p) {
  const std::uint64_t bits = le_bytes(p, 8);
  double d;
  std::memcpy(&d, &bits, sizeof d);
  return d;
}
inline std::int32_t le_int32(const unsigned char* p) {
  const auto bits = static_cast<std::uint32_t>(le_bytes(p, 4));
  std::int32_t v;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

/// One statement over one connection; both closed on scope exit.
struct Db {
  sqlite3* db = nullptr;
  sqlite3_stmt* st = nullptr;
  ~Db() {
    if (st) sqlite3_finalize(st);
    if (db) sqlite3_close(db);
  }
};

/// Column `c` of the current row as a blob of float64 values (empty when NULL); `what` for errors.
inline std::vector<double> doubles(sqlite3_stmt* st, int c, const std::string& where, const char* what) {
  if (sqlite3_column_type(st, c) == SQLITE_NULL) return {};
  if (sqlite3_column_type(st, c) != SQLITE_BLOB) throw AseDbError(where + ": " + what + " is not a blob");
  const auto* p = static_cast<const unsigned char*>(sqlite3_column_blob(st, c));
  const int bytes = sqlite3_column_bytes(st, c);
  if (bytes % 8) throw AseDbError(where + ": " + what + " has " + std::to_string(bytes) + " bytes, not float64 values");
  std::vector<double> v(std::size_t(bytes / 8));
  for (std::size_t k = 0; k < v.size(); ++k) {
    v[k] = le_double(p + 8 * k);
    if (!std::isfinite(v[k])) throw AseDbError(where + ": non-finite " + what + " value " + std::to_string(k));
  }
  return v;
}

inline std::vector<Vec3> rows3(const std::vector<double>& v, std::size_t n, const std::string& where,
                               const char* what) {
  if (v.size() != 3 * n)
    throw AseDbError(where + ": " + what + " has " + std::to_string(v.size()) + " values for " + std::to_string(n) +
                     " atoms (expected " + std::to_string(3 * n) + ")");
  std::vector<Vec3> r(n);
  for (std::size_t a = 0; a < n; ++a) r[a] = {v[3 * a], v[3 * a + 1], v[3 * a + 2]};
  return r;
}

}  // namespace ase_db_detail

/// All rows of the ASE database at `path`, in id order; Structure::source is "path:id=<row id>".
inline std::vector<Structure> read_ase_db(const std::string& path) {
  using namespace ase_db_detail;
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw AseDbError(path + ": cannot open");
    if (!sqlite_header(in)) throw AseDbError(path + ": not an SQLite file (an ASE database is one)");
  }
  Db h;
  if (sqlite3_open_v2(path.c_str(), &h.db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK)
    throw AseDbError(path + ": cannot open (" + std::string(h.db ? sqlite3_errmsg(h.db) : "out of memory") + ")");
  const char* sql =
      "SELECT id, numbers, positions, cell, pbc, energy, forces, stress, key_value_pairs FROM systems ORDER BY id";
  if (sqlite3_prepare_v2(h.db, sql, -1, &h.st, nullptr) != SQLITE_OK)
    throw AseDbError(path + ": not an ASE database (" + std::string(sqlite3_errmsg(h.db)) +
                     "; ASE's 'systems' table with numbers, positions, cell, pbc, energy, forces, stress, "
                     "key_value_pairs is expected)");
  std::vector<Structure> out;
  int rc;
  while ((rc = sqlite3_step(h.st)) == SQLITE_ROW) {
    sqlite3_stmt* st = h.st;
    const long long id = sqlite3_column_int64(st, 0);
    const std::string where = path + ":id=" + std::to_string(id);
    Structure s;
    s.source = where;
    // numbers: int32 blob
    if (sqlite3_column_type(st, 1) != SQLITE_BLOB) throw AseDbError(where + ": numbers is missing");
    {
      const auto* p = static_cast<const unsigned char*>(sqlite3_column_blob(st, 1));
      const int bytes = sqlite3_column_bytes(st, 1);
      if (bytes <= 0 || bytes % 4)
        throw AseDbError(where + ": numbers has " + std::to_string(bytes) + " bytes, not int32 values of >= 1 atom");
      s.numbers.resize(std::size_t(bytes / 4));
      for (std::size_t a = 0; a < s.numbers.size(); ++a) {
        s.numbers[a] = le_int32(p + 4 * a);
        if (s.numbers[a] < 1 || s.numbers[a] > extxyz_detail::kMaxZ)
          throw AseDbError(where + ": atomic number " + std::to_string(s.numbers[a]) + " of atom " +
                           std::to_string(a) + " is not in 1.." + std::to_string(extxyz_detail::kMaxZ));
      }
    }
    const std::size_t n = s.numbers.size();
    s.positions = rows3(doubles(st, 2, where, "positions"), n, where, "positions");
    const std::vector<double> cell = doubles(st, 3, where, "cell");
    if (!cell.empty() && cell.size() != 9)
      throw AseDbError(where + ": cell has " + std::to_string(cell.size()) + " values (expected 9)");
    for (std::size_t k = 0; k < cell.size(); ++k) {
      s.cell[k / 3][k % 3] = cell[k];
      if (cell[k] != 0) s.has_cell = true;
    }
    if (sqlite3_column_type(st, 4) != SQLITE_NULL) {
      const long long bits = sqlite3_column_int64(st, 4);
      if (bits < 0 || bits > 7) throw AseDbError(where + ": pbc = " + std::to_string(bits) + " (bits 1, 2, 4 expected)");
      for (int d = 0; d < 3; ++d) s.pbc[std::size_t(d)] = (bits >> d) & 1;
    }
    if ((s.pbc[0] || s.pbc[1] || s.pbc[2]) && !s.has_cell)
      throw AseDbError(where + ": periodic (pbc) without a cell");
    if (s.has_cell && extxyz_detail::cell_degenerate(s.cell)) throw AseDbError(where + ": degenerate (zero-volume) cell");
    if (sqlite3_column_type(st, 5) != SQLITE_NULL) {
      const int t = sqlite3_column_type(st, 5);
      if (t != SQLITE_FLOAT && t != SQLITE_INTEGER) throw AseDbError(where + ": energy is not a number");
      s.energy = sqlite3_column_double(st, 5);
      if (!std::isfinite(*s.energy)) throw AseDbError(where + ": non-finite energy");
    }
    const std::vector<double> f = doubles(st, 6, where, "forces");
    if (sqlite3_column_type(st, 6) != SQLITE_NULL) s.forces = rows3(f, n, where, "forces");
    const std::vector<double> v = doubles(st, 7, where, "stress");
    if (v.size() == 6) {
      s.stress = stress_from_voigt(v.data());
    } else if (v.size() == 9) {
      std::array<double, 9> m{};
      for (std::size_t k = 0; k < 9; ++k) m[k] = v[k];
      s.stress = m;
    } else if (sqlite3_column_type(st, 7) != SQLITE_NULL) {
      throw AseDbError(where + ": stress has " + std::to_string(v.size()) + " values (6 Voigt or 9 expected)");
    }
    if (sqlite3_column_type(st, 8) == SQLITE_TEXT) {
      const std::string text(reinterpret_cast<const char*>(sqlite3_column_text(st, 8)),
                             std::size_t(sqlite3_column_bytes(st, 8)));
      nlohmann::json kv;
      try {
        kv = nlohmann::json::parse(text);
      } catch (const nlohmann::json::exception& e) {
        throw AseDbError(where + ": key_value_pairs is not JSON (" + e.what() + ")");
      }
      if (!kv.is_object()) throw AseDbError(where + ": key_value_pairs is not a JSON object");
      for (auto it = kv.begin(); it != kv.end(); ++it) {
        const auto& val = it.value();
        if (val.is_string())
          s.info[it.key()] = val.get<std::string>();
        else if (val.is_boolean())
          s.info[it.key()] = val.get<bool>() ? "T" : "F";
        else if (val.is_number_integer())
          s.info[it.key()] = std::to_string(val.get<long long>());
        else if (val.is_number()) {
          std::ostringstream o;
          o.precision(17);
          o << val.get<double>();
          s.info[it.key()] = o.str();
        }
      }
    }
    out.push_back(std::move(s));
  }
  if (rc != SQLITE_DONE) throw AseDbError(path + ": read failed (" + std::string(sqlite3_errmsg(h.db)) + ")");
  if (out.empty()) throw AseDbError(path + ": no structures (the ASE database is empty)");
  return out;
}

}  // namespace hydragnn
