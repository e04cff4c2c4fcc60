// SPDX-License-Identifier: BSD-3-Clause
// Extended XYZ (extxyz) reader and writer, following the conventions of ASE.
//
// File layout, repeated once per frame:
//
//   <number of atoms>
//   <comment line: key=value pairs>
//   <one line per atom, whitespace-separated columns described by Properties=...>
//
// Comment line
//   * Pairs are separated by whitespace; `key=value`, `key = value` and bare `key`
//     (meaning true, stored as "T") are accepted.  Values (and keys) may be quoted with
//     "..." or '...' (backslash escapes \" \' \\ inside) or braced with {...}; the
//     delimiters are removed.  A value starting with '[' is kept verbatim up to the
//     matching ']'.  Keys are case-sensitive, except that `Lattice`/`Properties` may
//     also be written `lattice`/`properties`.  A key may appear only once.
//   * Lattice="ax ay az bx by bz cx cy cz"  -> Structure::cell (rows a, b, c), has_cell.
//     The cell must be finite and have non-zero volume.
//   * pbc="T T F"  (T/F, True/False, true/false, 1/0; one value applies to all three).
//     Default: "T T T" when Lattice is present, otherwise "F F F".
//   * energy=<real>  -> Structure::energy (only this key; free_energy etc. stay in info).
//   * stress="9 values" (row-major) or "6 values" (Voigt xx yy zz yz xz xy)
//     -> Structure::stress as a row-major 3x3.
//   * Properties=name:type:ncols:...  with type S (string), R (real), I (integer) or
//     L (logical).  Default when absent: species:S:1:pos:R:3.
//       species:S:1 -> numbers (chemical symbols, exact case, Z = 1..118)
//       Z:I:1       -> numbers (alternative to species; checked for consistency if both)
//       pos:R:3     -> positions (required; NOT wrapped into the cell)
//       forces:R:3  -> forces
//       other R/I/L columns -> arrays[name] (atom-major, L stored as 1/0) and
//                              array_cols[name]
//       other S columns are validated for their token count and otherwise ignored.
//   * Every other key goes to Structure::info with its value as written (delimiters
//     removed).
//
// Errors: any malformed input throws hydragnn::IoError with a message of the form
// "<name>:<line>: <what is wrong>", <line> being 1-based.  Blank lines are allowed only
// at the end of the file.  An empty file gives an empty vector.
//
// Writer: frames are written as
//   Lattice="..." (if has_cell) Properties=species:S:1:pos:R:3[:forces:R:3][:name:R:k...]
//   energy=... (if set) stress="9 values" (if set) pbc="T T F" <info key=value...>
// Reals are written in the shortest form that reads back to the same double, so
// read_extxyz(write_extxyz(frames)) reproduces every field the reader stores bitwise
// (extra I/L columns come back as R columns holding the same values).  The writer
// refuses (IoError) structures the reader would reject, e.g. inconsistent array sizes,
// non-finite positions, a degenerate cell or info keys that clash with reserved keys.
#pragma once

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <istream>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <hydragnn/core/structure.hpp>

namespace hydragnn {

/// Error raised for unreadable / malformed extxyz input and unwritable output.
struct IoError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace extxyz_detail {

// Chemical symbols, index = Z (index 0 is the ASE dummy "X", not accepted as input).
inline constexpr const char* kSymbols[] = {
    "X",                                                                      //
    "H",  "He", "Li", "Be", "B",  "C",  "N",  "O",  "F",  "Ne",               // 1-10
    "Na", "Mg", "Al", "Si", "P",  "S",  "Cl", "Ar", "K",  "Ca",               // 11-20
    "Sc", "Ti", "V",  "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn",               // 21-30
    "Ga", "Ge", "As", "Se", "Br", "Kr", "Rb", "Sr", "Y",  "Zr",               // 31-40
    "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn",               // 41-50
    "Sb", "Te", "I",  "Xe", "Cs", "Ba", "La", "Ce", "Pr", "Nd",               // 51-60
    "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb",               // 61-70
    "Lu", "Hf", "Ta", "W",  "Re", "Os", "Ir", "Pt", "Au", "Hg",               // 71-80
    "Tl", "Pb", "Bi", "Po", "At", "Rn", "Fr", "Ra", "Ac", "Th",               // 81-90
    "Pa", "U",  "Np", "Pu", "Am", "Cm", "Bk", "Cf", "Es", "Fm",               // 91-100
    "Md", "No", "Lr", "Rf", "Db", "Sg", "Bh", "Hs", "Mt", "Ds",               // 101-110
    "Rg", "Cn", "Nh", "Fl", "Mc", "Lv", "Ts", "Og"};                          // 111-118
inline constexpr int kMaxZ = static_cast<int>(sizeof(kSymbols) / sizeof(kSymbols[0])) - 1;
static_assert(kMaxZ == 118, "element table must cover Z = 1..118");

/// Z for a symbol, 0 if unknown.  Exact case ("Cu", not "CU").
inline int lookup_symbol(std::string_view s) noexcept {
  if (s.empty() || s.size() > 2) return 0;
  for (int z = 1; z <= kMaxZ; ++z)
    if (s == kSymbols[z]) return z;
  return 0;
}

inline bool is_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

inline std::string_view trim(std::string_view s) noexcept {
  std::size_t b = 0, e = s.size();
  while (b < e && is_space(s[b])) ++b;
  while (e > b && is_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

/// Splits on whitespace into `out` (cleared first).  Views point into `s`.
inline void split_ws(std::string_view s, std::vector<std::string_view>& out) {
  out.clear();
  std::size_t i = 0, n = s.size();
  while (true) {
    while (i < n && is_space(s[i])) ++i;
    if (i >= n) break;
    std::size_t b = i;
    while (i < n && !is_space(s[i])) ++i;
    out.push_back(s.substr(b, i - b));
  }
}

/// Value of a decimal literal whose magnitude is outside the double range: decides
/// between underflow (signed zero) and overflow (signed infinity) from the decimal
/// exponent of the leading non-zero digit.  `s` is a syntactically valid literal.
inline double out_of_range_value(std::string_view s) noexcept {
  bool neg = !s.empty() && s[0] == '-';
  long long exp10 = 0;  // decimal exponent of the first non-zero digit, before 'e'
  bool seen_point = false, seen_nonzero = false;
  long long int_digits = 0, lead_frac_zeros = 0;
  std::size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (c == '.') {
      seen_point = true;
    } else if (c >= '0' && c <= '9') {
      if (!seen_point) {
        if (seen_nonzero || c != '0') ++int_digits;
      } else if (!seen_nonzero && int_digits == 0) {
        if (c == '0') ++lead_frac_zeros;
      }
      if (c != '0') seen_nonzero = true;
    } else {
      break;  // exponent marker
    }
  }
  exp10 = int_digits > 0 ? int_digits - 1 : -(lead_frac_zeros + 1);
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    std::string_view e = s.substr(i + 1);
    if (!e.empty() && e[0] == '+') e.remove_prefix(1);
    long long ev = 0;
    auto r = std::from_chars(e.data(), e.data() + e.size(), ev);
    if (r.ec == std::errc::result_out_of_range) ev = (!e.empty() && e[0] == '-') ? -(1LL << 40) : (1LL << 40);
    exp10 += ev;
  }
  double mag = exp10 < 0 ? 0.0 : HUGE_VAL;
  return neg ? -mag : mag;
}

/// Parses a whole token as a double (accepts a leading '+', "nan", "inf").
/// Returns false if the token is not entirely a real number.
inline bool parse_real(std::string_view tok, double& out) noexcept {
  std::string_view s = tok;
  if (s.size() > 1 && s[0] == '+' && s[1] != '-' && s[1] != '+') s.remove_prefix(1);
  if (s.empty()) return false;
#if defined(__cpp_lib_to_chars) && __cpp_lib_to_chars >= 201611L
  double v = 0.0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v, std::chars_format::general);
  if (r.ptr != s.data() + s.size()) return false;
  if (r.ec == std::errc::result_out_of_range) {
    out = out_of_range_value(s);
    return true;
  }
  if (r.ec != std::errc()) return false;
  out = v;
  return true;
#else
  // Fallback for standard libraries without floating-point from_chars.  Note that
  // strtod honours the C locale's decimal separator.
  std::string tmp(s);
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(tmp.c_str(), &end);
  if (end != tmp.c_str() + tmp.size()) return false;
  // strtod accepts hexadecimal floats; extxyz does not.
  if (tmp.find_first_of("xX") != std::string::npos) return false;
  out = v;
  return true;
#endif
}

/// Parses a whole token as a (signed) integer, accepting a leading '+'.
inline bool parse_int(std::string_view tok, long long& out) noexcept {
  std::string_view s = tok;
  if (s.size() > 1 && s[0] == '+' && s[1] != '-' && s[1] != '+') s.remove_prefix(1);
  if (s.empty()) return false;
  long long v = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size()) return false;
  out = v;
  return true;
}

/// Parses ASE's logical spellings.
inline bool parse_bool(std::string_view s, bool& out) noexcept {
  if (s == "T" || s == "True" || s == "true" || s == "TRUE" || s == "1" || s == "t") {
    out = true;
    return true;
  }
  if (s == "F" || s == "False" || s == "false" || s == "FALSE" || s == "0" || s == "f") {
    out = false;
    return true;
  }
  return false;
}

/// Appends the shortest decimal form of `v` that reads back to the same double.
inline void append_real(std::string& out, double v) {
  char buf[64];
#if defined(__cpp_lib_to_chars) && __cpp_lib_to_chars >= 201611L
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, static_cast<std::size_t>(r.ptr - buf));
#else
  int n = std::snprintf(buf, sizeof(buf), "%.17g", v);
  out.append(buf, static_cast<std::size_t>(n));
#endif
}

/// Appends `v` right-aligned in a field of `width` characters (numbers never truncate).
inline void append_real_padded(std::string& out, double v, std::size_t width) {
  std::string tmp;
  append_real(tmp, v);
  if (tmp.size() < width) out.append(width - tmp.size(), ' ');
  out += tmp;
}

inline double det3(const Mat3& m) noexcept {
  return m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) -
         m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
         m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
}

/// True when the rows of `m` span zero volume (relative to the row lengths).
inline bool cell_degenerate(const Mat3& m) noexcept {
  double la = std::sqrt(m[0][0] * m[0][0] + m[0][1] * m[0][1] + m[0][2] * m[0][2]);
  double lb = std::sqrt(m[1][0] * m[1][0] + m[1][1] * m[1][1] + m[1][2] * m[1][2]);
  double lc = std::sqrt(m[2][0] * m[2][0] + m[2][1] * m[2][1] + m[2][2] * m[2][2]);
  double scale = la * lb * lc;
  if (!(scale > 0.0)) return true;
  return std::fabs(det3(m)) <= 1e-10 * scale;
}

/// Quotes a token for error messages: 'abc' (long tokens are shortened).
inline std::string show(std::string_view tok) {
  std::string s = "'";
  if (tok.size() > 60) {
    s.append(tok.substr(0, 57));
    s += "...";
  } else {
    s.append(tok);
  }
  s += "'";
  return s;
}

/// One key/value pair of a comment line.
struct KeyValue {
  std::string key;
  std::string value;
  bool bare = false;  ///< key given without '=' (value is "T")
};

/// Parser of a whole extxyz buffer; keeps the position for error messages.
class Reader {
 public:
  Reader(std::string_view data, std::string name) : data_(data), name_(std::move(name)) {}

  std::vector<Structure> run() {
    std::vector<Structure> frames;
    std::string_view line;
    while (next_line(line)) {
      if (trim(line).empty()) {
        // Blank lines are tolerated only if nothing but blank lines follows.
        std::size_t blank_line = line_no_;
        std::string_view rest;
        while (next_line(rest)) {
          if (!trim(rest).empty())
            fail(blank_line, "blank line where the atom count of a frame was expected");
        }
        break;
      }
      frames.push_back(read_frame(line));
    }
    return frames;
  }

 private:
  std::string_view data_;
  std::string name_;
  std::size_t pos_ = 0;      // offset of the next unread character
  std::size_t line_no_ = 0;  // 1-based number of the line last returned

  // Per-frame column description.
  enum class Kind { Species, Z, Pos, Forces, Real, Int, Logical, IgnoredString };
  struct Column {
    std::string name;
    char type = 'R';
    int ncols = 1;
    Kind kind = Kind::Real;
  };

  [[noreturn]] void fail(std::size_t line, const std::string& what) const {
    throw IoError(name_ + ":" + std::to_string(line) + ": " + what);
  }

  bool next_line(std::string_view& line) {
    if (pos_ >= data_.size()) return false;
    std::size_t nl = data_.find('\n', pos_);
    std::size_t end = nl == std::string_view::npos ? data_.size() : nl;
    line = data_.substr(pos_, end - pos_);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos_ = nl == std::string_view::npos ? data_.size() : nl + 1;
    ++line_no_;
    return true;
  }

  double real_or_fail(std::string_view tok, std::size_t line, const std::string& where) const {
    double v = 0.0;
    if (!parse_real(tok, v)) fail(line, "cannot parse " + show(tok) + " as a real number in " + where);
    return v;
  }

  double finite_real_or_fail(std::string_view tok, std::size_t line, const std::string& where) const {
    double v = real_or_fail(tok, line, where);
    if (!std::isfinite(v)) fail(line, "non-finite value " + show(tok) + " in " + where);
    return v;
  }

  // ---- comment line -------------------------------------------------------------

  /// Reads one key or value token starting at s[i]; advances i.  `stop_at_eq` ends a
  /// bare token at '=' (for keys).
  std::string read_token(std::string_view s, std::size_t& i, bool stop_at_eq, std::size_t line) const {
    std::string tok;
    const std::size_t n = s.size();
    char c = s[i];
    if (c == '"' || c == '\'' || c == '{') {
      const char close = c == '{' ? '}' : c;
      const std::size_t start = i;
      ++i;
      bool closed = false;
      while (i < n) {
        char d = s[i];
        if (d == '\\' && close != '}' && i + 1 < n &&
            (s[i + 1] == close || s[i + 1] == '\\')) {
          tok += s[i + 1];
          i += 2;
          continue;
        }
        if (d == close) {
          closed = true;
          ++i;
          break;
        }
        tok += d;
        ++i;
      }
      if (!closed) fail(line, std::string("unterminated ") + c + " starting at column " + std::to_string(start + 1) + " of the comment line");
      if (i < n && !is_space(s[i]) && !(stop_at_eq && s[i] == '='))
        fail(line, "unexpected character '" + std::string(1, s[i]) + "' after quoted text at column " + std::to_string(i + 1) + " of the comment line");
      return tok;
    }
    if (c == '[') {
      // Kept verbatim up to the matching bracket (nesting allowed).
      const std::size_t start = i;
      int depth = 0;
      while (i < n) {
        char d = s[i];
        if (d == '[') ++depth;
        if (d == ']') --depth;
        ++i;
        if (depth == 0) break;
      }
      if (depth != 0) fail(line, "unterminated [ starting at column " + std::to_string(start + 1) + " of the comment line");
      tok.assign(s.substr(start, i - start));
      if (i < n && !is_space(s[i]) && !(stop_at_eq && s[i] == '='))
        fail(line, "unexpected character '" + std::string(1, s[i]) + "' after ']' at column " + std::to_string(i + 1) + " of the comment line");
      return tok;
    }
    const std::size_t start = i;
    while (i < n && !is_space(s[i]) && !(stop_at_eq && s[i] == '=')) ++i;
    tok.assign(s.substr(start, i - start));
    return tok;
  }

  std::vector<KeyValue> parse_comment(std::string_view s, std::size_t line) const {
    std::vector<KeyValue> kvs;
    std::size_t i = 0;
    const std::size_t n = s.size();
    while (true) {
      while (i < n && is_space(s[i])) ++i;
      if (i >= n) break;
      if (s[i] == '=') fail(line, "'=' without a key at column " + std::to_string(i + 1) + " of the comment line");
      KeyValue kv;
      kv.key = read_token(s, i, /*stop_at_eq=*/true, line);
      if (kv.key.empty()) fail(line, "empty key in the comment line");
      std::size_t j = i;
      while (j < n && is_space(s[j])) ++j;
      if (j < n && s[j] == '=') {
        i = j + 1;
        while (i < n && is_space(s[i])) ++i;
        if (i >= n) fail(line, "missing value for key '" + kv.key + "'");
        kv.value = read_token(s, i, /*stop_at_eq=*/false, line);
      } else {
        kv.value = "T";
        kv.bare = true;
      }
      for (const auto& other : kvs)
        if (other.key == kv.key) fail(line, "duplicate key '" + kv.key + "' in the comment line");
      kvs.push_back(std::move(kv));
    }
    return kvs;
  }

  std::vector<Column> parse_properties(const std::string& spec, std::size_t line) const {
    std::vector<std::string_view> parts;
    std::string_view s(spec);
    std::size_t b = 0;
    while (true) {
      std::size_t c = s.find(':', b);
      parts.push_back(s.substr(b, c == std::string_view::npos ? std::string_view::npos : c - b));
      if (c == std::string_view::npos) break;
      b = c + 1;
    }
    const std::string where = "Properties=" + spec;
    if (parts.size() % 3 != 0)
      fail(line, where + ": expected name:type:ncols triples, got " + std::to_string(parts.size()) + " fields");
    std::vector<Column> cols;
    bool have_pos = false;
    for (std::size_t k = 0; k < parts.size(); k += 3) {
      Column col;
      col.name.assign(parts[k]);
      if (col.name.empty()) fail(line, where + ": empty column name");
      if (parts[k + 1].size() != 1 || std::string_view("SRIL").find(parts[k + 1][0]) == std::string_view::npos)
        fail(line, where + ": column " + col.name + " has unknown type " + show(parts[k + 1]) + " (expected S, R, I or L)");
      col.type = parts[k + 1][0];
      long long nc = 0;
      if (!parse_int(parts[k + 2], nc) || nc < 1 || nc > 1000000)
        fail(line, where + ": column " + col.name + " has invalid width " + show(parts[k + 2]));
      col.ncols = static_cast<int>(nc);
      for (const auto& other : cols)
        if (other.name == col.name) fail(line, where + ": duplicate column " + col.name);

      auto require = [&](char type, int width) {
        if (col.type != type || col.ncols != width)
          fail(line, where + ": column " + col.name + " must be " + std::string(1, type) + ":" + std::to_string(width));
      };
      if (col.name == "species") {
        require('S', 1);
        col.kind = Kind::Species;
      } else if (col.name == "Z") {
        require('I', 1);
        col.kind = Kind::Z;
      } else if (col.name == "pos") {
        require('R', 3);
        col.kind = Kind::Pos;
        have_pos = true;
      } else if (col.name == "forces") {
        require('R', 3);
        col.kind = Kind::Forces;
      } else {
        switch (col.type) {
          case 'R': col.kind = Kind::Real; break;
          case 'I': col.kind = Kind::Int; break;
          case 'L': col.kind = Kind::Logical; break;
          default: col.kind = Kind::IgnoredString; break;
        }
      }
      cols.push_back(std::move(col));
    }
    if (!have_pos) fail(line, where + ": missing pos column (pos:R:3)");
    bool have_species = false;
    for (const auto& c : cols) have_species |= (c.kind == Kind::Species || c.kind == Kind::Z);
    if (!have_species) fail(line, where + ": missing species column (species:S:1 or Z:I:1)");
    return cols;
  }

  /// Splits a multi-number value (Lattice, stress, pbc) into tokens.
  static std::vector<std::string_view> value_tokens(const std::string& v) {
    std::vector<std::string_view> toks;
    std::string_view s(v);
    // Accept "[a, b, c]" style as well as space-separated values.
    if (s.size() >= 2 && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
    std::size_t i = 0, n = s.size();
    while (true) {
      while (i < n && (is_space(s[i]) || s[i] == ',')) ++i;
      if (i >= n) break;
      std::size_t b = i;
      while (i < n && !is_space(s[i]) && s[i] != ',') ++i;
      toks.push_back(s.substr(b, i - b));
    }
    return toks;
  }

  // ---- frames -----------------------------------------------------------------

  Structure read_frame(std::string_view count_line) {
    const std::size_t frame_line = line_no_;
    Structure st;
    st.source = name_ + ":" + std::to_string(frame_line);

    // Atom count.
    std::string_view ct = trim(count_line);
    long long natoms = 0;
    if (!parse_int(ct, natoms))
      fail(frame_line, "expected the number of atoms (a positive integer), got " + show(ct));
    if (natoms == 0) fail(frame_line, "empty frame (0 atoms)");
    if (natoms < 0) fail(frame_line, "number of atoms must be positive, got " + show(ct));

    // Comment line.
    std::string_view comment;
    if (!next_line(comment))
      fail(frame_line, "file ends before the comment line of the frame declaring " + std::to_string(natoms) + " atoms");
    const std::size_t cline = line_no_;
    std::vector<KeyValue> kvs = parse_comment(comment, cline);

    std::string properties = "species:S:1:pos:R:3";
    bool have_pbc = false;
    for (auto& kv : kvs) {
      const std::string& k = kv.key;
      if (k == "Lattice" || k == "lattice") {
        auto toks = value_tokens(kv.value);
        if (toks.size() != 9)
          fail(cline, k + " must have 9 values, got " + std::to_string(toks.size()));
        for (std::size_t r = 0; r < 3; ++r)
          for (std::size_t c = 0; c < 3; ++c)
            st.cell[r][c] = finite_real_or_fail(toks[3 * r + c], cline, k);
        if (cell_degenerate(st.cell)) fail(cline, k + " is degenerate (zero volume): " + show(kv.value));
        st.has_cell = true;
      } else if (k == "Properties" || k == "properties") {
        properties = kv.value;
      } else if (k == "pbc") {
        auto toks = value_tokens(kv.value);
        if (toks.size() != 1 && toks.size() != 3)
          fail(cline, "pbc must have 3 values (e.g. \"T T F\"), got " + std::to_string(toks.size()));
        for (std::size_t d = 0; d < 3; ++d) {
          std::string_view t = toks.size() == 1 ? toks[0] : toks[d];
          bool b = false;
          if (!parse_bool(t, b)) fail(cline, "cannot parse " + show(t) + " as a logical (T/F) in pbc");
          st.pbc[d] = b;
        }
        have_pbc = true;
      } else if (k == "energy") {
        st.energy = finite_real_or_fail(kv.value, cline, "energy");
      } else if (k == "stress") {
        auto toks = value_tokens(kv.value);
        std::array<double, 9> m{};
        if (toks.size() == 9) {
          for (std::size_t a = 0; a < 9; ++a) m[a] = finite_real_or_fail(toks[a], cline, "stress");
        } else if (toks.size() == 6) {
          double v[6];
          for (std::size_t a = 0; a < 6; ++a) v[a] = finite_real_or_fail(toks[a], cline, "stress");
          m = stress_from_voigt(v);
        } else {
          fail(cline, "stress must have 6 (Voigt) or 9 values, got " + std::to_string(toks.size()));
        }
        st.stress = m;
      } else {
        st.info[k] = std::move(kv.value);
      }
    }
    if (!have_pbc) st.pbc = st.has_cell ? std::array<bool, 3>{true, true, true} : std::array<bool, 3>{false, false, false};

    const std::vector<Column> cols = parse_properties(properties, cline);
    std::size_t ntok = 0;
    for (const auto& c : cols) ntok += static_cast<std::size_t>(c.ncols);

    // Storage.
    const std::size_t n = static_cast<std::size_t>(natoms);
    // Do not trust the count for allocation beyond what the remaining bytes can hold.
    const std::size_t reserve_n = std::min<std::size_t>(n, (data_.size() - pos_) / 2 + 1);
    st.positions.reserve(reserve_n);
    st.numbers.reserve(reserve_n);
    bool have_forces = false;
    bool have_species_col = false, have_z_col = false;
    for (const auto& c : cols) {
      if (c.kind == Kind::Forces) {
        have_forces = true;
        st.forces.reserve(reserve_n);
      } else if (c.kind == Kind::Real || c.kind == Kind::Int || c.kind == Kind::Logical) {
        st.arrays[c.name].reserve(reserve_n * static_cast<std::size_t>(c.ncols));
        st.array_cols[c.name] = c.ncols;
      } else if (c.kind == Kind::Species) {
        have_species_col = true;
      } else if (c.kind == Kind::Z) {
        have_z_col = true;
      }
    }
    const bool both_species = have_species_col && have_z_col;

    std::vector<std::string_view> toks;
    toks.reserve(ntok + 4);
    std::string_view aline;
    for (std::size_t a = 0; a < n; ++a) {
      if (!next_line(aline))
        fail(frame_line, "frame declares " + std::to_string(n) + " atoms but the file ends after " +
                             std::to_string(a) + " atom line" + (a == 1 ? "" : "s") + " (at line " +
                             std::to_string(line_no_) + ")");
      const std::size_t al = line_no_;
      split_ws(aline, toks);
      if (toks.size() != ntok) {
        if (toks.empty())
          fail(al, "blank line where atom " + std::to_string(a + 1) + " of " + std::to_string(n) +
                       " (frame at line " + std::to_string(frame_line) + ") was expected");
        fail(al, "expected " + std::to_string(ntok) + " columns per Properties=" + properties + ", got " +
                     std::to_string(toks.size()));
      }
      std::size_t t = 0;
      Vec3 p{}, f{};
      int z_species = 0, z_num = 0;
      for (const auto& c : cols) {
        switch (c.kind) {
          case Kind::Species: {
            z_species = lookup_symbol(toks[t]);
            if (z_species == 0) fail(al, "unknown chemical symbol " + show(toks[t]) + " in column species");
            break;
          }
          case Kind::Z: {
            long long z = 0;
            if (!parse_int(toks[t], z)) fail(al, "cannot parse " + show(toks[t]) + " as an integer in column Z");
            if (z < 1 || z > kMaxZ) fail(al, "atomic number " + show(toks[t]) + " out of range 1.." + std::to_string(kMaxZ) + " in column Z");
            z_num = static_cast<int>(z);
            break;
          }
          case Kind::Pos:
            for (std::size_t d = 0; d < 3; ++d) p[d] = finite_real_or_fail(toks[t + d], al, "column pos");
            break;
          case Kind::Forces:
            for (std::size_t d = 0; d < 3; ++d) f[d] = finite_real_or_fail(toks[t + d], al, "column forces");
            break;
          case Kind::Real: {
            auto& arr = st.arrays[c.name];
            for (std::size_t d = 0; d < static_cast<std::size_t>(c.ncols); ++d) arr.push_back(real_or_fail(toks[t + d], al, "column " + c.name));
            break;
          }
          case Kind::Int: {
            auto& arr = st.arrays[c.name];
            for (std::size_t d = 0; d < static_cast<std::size_t>(c.ncols); ++d) {
              long long v = 0;
              if (!parse_int(toks[t + d], v))
                fail(al, "cannot parse " + show(toks[t + d]) + " as an integer in column " + c.name);
              arr.push_back(static_cast<double>(v));
            }
            break;
          }
          case Kind::Logical: {
            auto& arr = st.arrays[c.name];
            for (std::size_t d = 0; d < static_cast<std::size_t>(c.ncols); ++d) {
              bool v = false;
              if (!parse_bool(toks[t + d], v))
                fail(al, "cannot parse " + show(toks[t + d]) + " as a logical (T/F) in column " + c.name);
              arr.push_back(v ? 1.0 : 0.0);
            }
            break;
          }
          case Kind::IgnoredString:
            break;
        }
        t += static_cast<std::size_t>(c.ncols);
      }
      if (both_species && z_species != z_num)
        fail(al, "species " + std::string(kSymbols[z_species]) + " disagrees with Z=" + std::to_string(z_num));
      st.numbers.push_back(have_species_col ? z_species : z_num);
      st.positions.push_back(p);
      if (have_forces) st.forces.push_back(f);
    }
    return st;
  }
};

inline bool bare_safe(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (is_space(c) || c == '"' || c == '\'' || c == '{' || c == '}' || c == '[' || c == ']' || c == '=' ||
        c == '\\')
      return false;
  }
  return true;
}

/// Appends `s` bare if that reads back identically, otherwise double-quoted with
/// backslash escapes for '"' and '\'.
inline void append_quoted_if_needed(std::string& out, const std::string& s) {
  if (bare_safe(s)) {
    out += s;
    return;
  }
  out += '"';
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

inline bool is_reserved_key(const std::string& k) {
  return k == "Lattice" || k == "lattice" || k == "Properties" || k == "properties" || k == "energy" ||
         k == "stress" || k == "pbc";
}

inline bool valid_column_name(const std::string& k) {
  if (k.empty()) return false;
  for (char c : k)
    if (is_space(c) || c == ':' || c == '"' || c == '\'' || c == '=' || c == '\\') return false;
  return true;
}

/// Appends one frame to `out`; `index` is used in error messages.
inline void format_frame(std::string& out, const Structure& s, std::size_t index) {
  auto fail = [&](const std::string& what) -> void {
    throw IoError("write_extxyz: frame " + std::to_string(index) +
                  (s.source.empty() ? std::string() : " (" + s.source + ")") + ": " + what);
  };
  const std::size_t n = s.numbers.size();
  if (n == 0) fail("cannot write an empty frame (0 atoms)");
  if (s.positions.size() != n)
    fail("positions has " + std::to_string(s.positions.size()) + " entries for " + std::to_string(n) + " atoms");
  if (!s.forces.empty() && s.forces.size() != n)
    fail("forces has " + std::to_string(s.forces.size()) + " entries for " + std::to_string(n) + " atoms");
  for (std::size_t a = 0; a < n; ++a) {
    if (s.numbers[a] < 1 || s.numbers[a] > kMaxZ)
      fail("atomic number " + std::to_string(s.numbers[a]) + " of atom " + std::to_string(a) + " out of range");
    for (std::size_t d = 0; d < 3; ++d) {
      if (!std::isfinite(s.positions[a][d])) fail("non-finite position of atom " + std::to_string(a));
      if (!s.forces.empty() && !std::isfinite(s.forces[a][d])) fail("non-finite force on atom " + std::to_string(a));
    }
  }
  for (const auto& kv : s.arrays) {
    const std::string& name = kv.first;
    if (!valid_column_name(name)) fail("invalid array name " + show(name));
    if (name == "species" || name == "pos" || name == "forces" || name == "Z")
      fail("array name " + show(name) + " clashes with a reserved column");
    auto it = s.array_cols.find(name);
    if (it == s.array_cols.end() || it->second < 1) fail("array " + show(name) + " has no valid array_cols entry");
    if (kv.second.size() != n * static_cast<std::size_t>(it->second))
      fail("array " + show(name) + " has " + std::to_string(kv.second.size()) + " values, expected " +
           std::to_string(n) + " x " + std::to_string(it->second));
  }
  for (const auto& kv : s.array_cols)
    if (s.arrays.find(kv.first) == s.arrays.end()) fail("array_cols entry " + show(kv.first) + " without array");
  if (s.energy && !std::isfinite(*s.energy)) fail("non-finite energy");
  if (s.stress)
    for (double v : *s.stress)
      if (!std::isfinite(v)) fail("non-finite stress");
  if (s.has_cell) {
    for (const auto& row : s.cell)
      for (double v : row)
        if (!std::isfinite(v)) fail("non-finite cell");
    if (cell_degenerate(s.cell)) fail("degenerate (zero-volume) cell");
  }
  for (const auto& kv : s.info) {
    if (kv.first.empty() || !bare_safe(kv.first)) fail("info key " + show(kv.first) + " cannot be written");
    if (is_reserved_key(kv.first)) fail("info key " + show(kv.first) + " clashes with a reserved key");
    if (kv.second.find_first_of("\n\r") != std::string::npos)
      fail("info value of " + show(kv.first) + " contains a line break");
  }

  // Atom count and comment line.
  out += std::to_string(n);
  out += '\n';
  if (s.has_cell) {
    out += "Lattice=\"";
    for (std::size_t r = 0; r < 3; ++r)
      for (std::size_t c = 0; c < 3; ++c) {
        if (r || c) out += ' ';
        append_real(out, s.cell[r][c]);
      }
    out += "\" ";
  }
  out += "Properties=species:S:1:pos:R:3";
  if (!s.forces.empty()) out += ":forces:R:3";
  for (const auto& kv : s.arrays) {
    out += ':';
    out += kv.first;
    out += ":R:";
    out += std::to_string(s.array_cols.at(kv.first));
  }
  if (s.energy) {
    out += " energy=";
    append_real(out, *s.energy);
  }
  if (s.stress) {
    out += " stress=\"";
    for (std::size_t a = 0; a < 9; ++a) {
      if (a) out += ' ';
      append_real(out, (*s.stress)[a]);
    }
    out += '"';
  }
  out += " pbc=\"";
  for (std::size_t d = 0; d < 3; ++d) {
    if (d) out += ' ';
    out += s.pbc[d] ? 'T' : 'F';
  }
  out += '"';
  for (const auto& kv : s.info) {
    out += ' ';
    out += kv.first;
    out += '=';
    append_quoted_if_needed(out, kv.second);
  }
  out += '\n';

  // Atom lines: symbol, pos, [forces], arrays in Properties order.
  constexpr std::size_t kWidth = 24;  // longest shortest-form double is 24 characters
  for (std::size_t a = 0; a < n; ++a) {
    const char* sym = kSymbols[s.numbers[a]];
    out += sym;
    if (sym[1] == '\0') out += ' ';
    for (std::size_t d = 0; d < 3; ++d) {
      out += ' ';
      append_real_padded(out, s.positions[a][d], kWidth);
    }
    if (!s.forces.empty())
      for (std::size_t d = 0; d < 3; ++d) {
        out += ' ';
        append_real_padded(out, s.forces[a][d], kWidth);
      }
    for (const auto& kv : s.arrays) {
      const std::size_t w = static_cast<std::size_t>(s.array_cols.at(kv.first));
      for (std::size_t d = 0; d < w; ++d) {
        out += ' ';
        append_real_padded(out, kv.second[a * w + d], kWidth);
      }
    }
    out += '\n';
  }
}

}  // namespace extxyz_detail

/// Atomic number of a chemical symbol ("H" -> 1 ... "Og" -> 118); exact case.
/// Throws IoError for an unknown symbol.
inline int atomic_number(const std::string& symbol) {
  int z = extxyz_detail::lookup_symbol(symbol);
  if (z == 0) throw IoError("unknown chemical symbol " + extxyz_detail::show(symbol));
  return z;
}

/// Chemical symbol of atomic number z (1..118).  Throws IoError outside that range.
inline const char* chemical_symbol(int z) {
  if (z < 1 || z > extxyz_detail::kMaxZ)
    throw IoError("no chemical symbol for atomic number " + std::to_string(z));
  return extxyz_detail::kSymbols[z];
}

/// Reads all frames from a stream; `name` is used in error messages and Structure::source.
inline std::vector<Structure> read_extxyz(std::istream& in, const std::string& name) {
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) throw IoError(name + ": read error");
  const std::string data = buf.str();
  return extxyz_detail::Reader(data, name).run();
}

/// Reads all frames of a file.  Messages and Structure::source use `path` as given.
inline std::vector<Structure> read_extxyz(const std::string& path) {
  errno = 0;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    const int err = errno;
    throw IoError("cannot open '" + path + "' for reading" + (err ? std::string(": ") + std::strerror(err) : std::string()));
  }
  std::string data;
  char chunk[1 << 16];
  std::size_t got = 0;
  while ((got = std::fread(chunk, 1, sizeof(chunk), f)) > 0) data.append(chunk, got);
  const bool error = std::ferror(f) != 0;
  std::fclose(f);
  if (error) throw IoError("error while reading '" + path + "'");
  return extxyz_detail::Reader(data, path).run();
}

/// Writes frames to a stream.  Throws IoError for frames that cannot be represented
/// (see the header comment) or when the stream fails.
inline void write_extxyz(std::ostream& out, const std::vector<Structure>& frames) {
  std::string buf;
  for (std::size_t i = 0; i < frames.size(); ++i) {
    buf.clear();
    extxyz_detail::format_frame(buf, frames[i], i);
    out.write(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (!out) throw IoError("write_extxyz: stream error while writing frame " + std::to_string(i));
  }
  out.flush();
  if (!out) throw IoError("write_extxyz: stream error while flushing");
}

/// Writes frames to `path` atomically: the data go to path + ".tmp", which is then
/// renamed over `path`.  On failure the temporary file is removed and IoError thrown.
inline void write_extxyz(const std::string& path, const std::vector<Structure>& frames) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) {
      const int err = errno;
      throw IoError("cannot open '" + tmp + "' for writing" + (err ? std::string(": ") + std::strerror(err) : std::string()));
    }
    try {
      write_extxyz(out, frames);
    } catch (const IoError& e) {
      out.close();
      std::remove(tmp.c_str());
      throw IoError(std::string(e.what()) + " (writing '" + path + "')");
    }
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      throw IoError("error while closing '" + tmp + "'");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    throw IoError("cannot rename '" + tmp + "' to '" + path + "': " + std::strerror(err));
  }
}

}  // namespace hydragnn
