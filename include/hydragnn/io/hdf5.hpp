// SPDX-License-Identifier: BSD-3-Clause
// Structures in one HDF5 file ("hydragnn-structures", version 1), for datasets too large to parse on
// every rank: per-structure arrays small enough for every rank to read, atom arrays read per
// structure by the rank that owns it.
//
//   /  attributes: format = "hydragnn-structures", version = 1, num_structures S, num_atoms N,
//                  dataset_names (one string per dataset, ';'-joined)
//   /structures/atom_offset   int64 [S+1]   atoms of structure i: [offset[i], offset[i+1])
//   /structures/cell          float64 [S,9] rows a, b, c; /structures/has_cell uint8 [S]
//   /structures/pbc           uint8 [S,3]
//   /structures/energy        float64 [S]   NaN: no energy
//   /structures/stress        float64 [S,9] NaN: no stress
//   /structures/dataset       int32 [S]     index into dataset_names
//   /structures/force_sq      float64 [S]   sum of squared force components (the energy scale)
//   /structures/has_forces    uint8 [S]
//   /structures/composition   int32 [S,Z]   atoms of each species; attribute species: the Z of the columns
//   /structures/info/<key>    float64 [S,c] numeric comment-line values (NaN: absent)
//   /atoms/numbers            int32 [N]
//   /atoms/positions          float64 [N,3]
//   /atoms/forces             float64 [N,3] (zeros where a structure has none)
//   /atoms/arrays/<name>      float64 [N,c] other per-atom columns (NaN: absent)
//   /metadata/<dataset>/      attributes: num_structures, num_atoms, species (Z), reference_energy
//                             (least squares over the dataset), energy_per_atom_mean/std,
//                             force_rms; degree_histogram + radius when converted with a radius
//
// Non-numeric comment-line values (e.g. config_type=bulk) are not stored. Serial HDF5 or the MPI-IO
// build (Debian libhdf5-openmpi-dev): HDF5Structures opens with the file-access property list it is
// given (dist/ passes an MPI-IO one); reads are independent, so a rank touches only its structures.
#pragma once

#include <hydragnn/core/structure.hpp>

#include <hdf5.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace hydragnn {

struct HDF5Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace h5_detail {

/// An HDF5 identifier closed on scope exit.
class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept {
    std::swap(id_, o.id_);
    std::swap(close_, o.close_);
    return *this;
  }
  ~Handle() {
    if (id_ >= 0 && close_) close_(id_);
  }
  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

inline hid_t check(hid_t id, const std::string& what) {
  if (id < 0) throw HDF5Error(what);
  return id;
}

template <class T> hid_t mem_type();
template <> inline hid_t mem_type<double>() { return H5T_NATIVE_DOUBLE; }
template <> inline hid_t mem_type<std::int64_t>() { return H5T_NATIVE_INT64; }
template <> inline hid_t mem_type<std::int32_t>() { return H5T_NATIVE_INT32; }
template <> inline hid_t mem_type<std::uint8_t>() { return H5T_NATIVE_UINT8; }

inline Handle group(hid_t parent, const std::string& name, bool create, const std::string& file) {
  if (create) return Handle(check(H5Gcreate2(parent, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), file + ": cannot create group " + name), H5Gclose);
  return Handle(check(H5Gopen2(parent, name.c_str(), H5P_DEFAULT), file + ": no group " + name), H5Gclose);
}

/// A 1-D or 2-D dataset [rows, cols] written whole (cols = 0: 1-D).
template <class T>
void write(hid_t parent, const std::string& name, const std::vector<T>& v, std::size_t cols, const std::string& file) {
  const std::size_t rows = cols ? v.size() / cols : v.size();
  hsize_t dims[2] = {hsize_t(rows), hsize_t(cols)};
  Handle space(check(H5Screate_simple(cols ? 2 : 1, dims, nullptr), file + ": dataspace of " + name), H5Sclose);
  Handle dset(check(H5Dcreate2(parent, name.c_str(), mem_type<T>(), space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                    file + ": cannot create " + name),
              H5Dclose);
  if (!v.empty() && H5Dwrite(dset, mem_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) < 0)
    throw HDF5Error(file + ": cannot write " + name);
}

/// Rows [r0, r0 + n) of a 1-D or 2-D dataset (all columns).
template <class T>
std::vector<T> read_rows(hid_t dset, hsize_t r0, hsize_t n, const std::string& what) {
  Handle space(check(H5Dget_space(dset), what), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(space);
  hsize_t dims[2] = {0, 1};
  H5Sget_simple_extent_dims(space, dims, nullptr);
  const hsize_t cols = rank == 2 ? dims[1] : 1;
  if (r0 + n > dims[0]) throw HDF5Error(what + ": rows " + std::to_string(r0) + ".." + std::to_string(r0 + n) + " of " + std::to_string(dims[0]));
  std::vector<T> out(std::size_t(n * cols));
  if (n == 0) return out;
  hsize_t start[2] = {r0, 0}, count[2] = {n, cols};
  if (H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, count, nullptr) < 0) throw HDF5Error(what + ": selection");
  Handle mem(check(H5Screate_simple(rank, count, nullptr), what), H5Sclose);
  if (H5Dread(dset, mem_type<T>(), mem, space, H5P_DEFAULT, out.data()) < 0) throw HDF5Error(what + ": read failed");
  return out;
}

inline hsize_t columns(hid_t dset) {
  Handle space(H5Dget_space(dset), H5Sclose);
  hsize_t dims[2] = {0, 1};
  const int rank = H5Sget_simple_extent_ndims(space);
  H5Sget_simple_extent_dims(space, dims, nullptr);
  return rank == 2 ? dims[1] : 1;
}

inline hsize_t rows(hid_t dset) {
  Handle space(H5Dget_space(dset), H5Sclose);
  hsize_t dims[2] = {0, 0};
  H5Sget_simple_extent_dims(space, dims, nullptr);
  return dims[0];
}

inline void write_attr_string(hid_t obj, const std::string& name, const std::string& value) {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type, value.empty() ? 1 : value.size());
  H5Tset_strpad(type, H5T_STR_NULLPAD);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(check(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), "attribute " + name), H5Aclose);
  H5Awrite(attr, type, value.empty() ? "" : value.data());
}

inline std::string read_attr_string(hid_t obj, const std::string& name, const std::string& file) {
  if (H5Aexists(obj, name.c_str()) <= 0) throw HDF5Error(file + ": no attribute '" + name + "'");
  Handle attr(H5Aopen(obj, name.c_str(), H5P_DEFAULT), H5Aclose);
  Handle type(H5Aget_type(attr), H5Tclose);
  const std::size_t n = H5Tget_size(type);
  std::string s(n, '\0');
  Handle mtype(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(mtype, n);
  H5Tset_strpad(mtype, H5T_STR_NULLPAD);
  if (H5Aread(attr, mtype, s.data()) < 0) throw HDF5Error(file + ": cannot read attribute '" + name + "'");
  while (!s.empty() && s.back() == '\0') s.pop_back();
  return s;
}

template <class T>
void write_attr(hid_t obj, const std::string& name, const std::vector<T>& v) {
  hsize_t n = v.size();
  Handle space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  Handle attr(check(H5Acreate2(obj, name.c_str(), mem_type<T>(), space, H5P_DEFAULT, H5P_DEFAULT), "attribute " + name), H5Aclose);
  if (n) H5Awrite(attr, mem_type<T>(), v.data());
}

template <class T>
std::vector<T> read_attr(hid_t obj, const std::string& name, const std::string& file) {
  if (H5Aexists(obj, name.c_str()) <= 0) throw HDF5Error(file + ": no attribute '" + name + "'");
  Handle attr(H5Aopen(obj, name.c_str(), H5P_DEFAULT), H5Aclose);
  Handle space(H5Aget_space(attr), H5Sclose);
  const hssize_t n = H5Sget_simple_extent_npoints(space);
  std::vector<T> v(std::size_t(std::max<hssize_t>(n, 0)));
  if (!v.empty() && H5Aread(attr, mem_type<T>(), v.data()) < 0) throw HDF5Error(file + ": cannot read attribute '" + name + "'");
  return v;
}

inline std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

/// The numbers of a comment-line value, or nothing when any word is not a number.
inline bool numbers_of(const std::string& value, std::vector<double>& out) {
  out.clear();
  std::istringstream in(value);
  std::string w;
  while (in >> w) {
    char* end = nullptr;
    const double x = std::strtod(w.c_str(), &end);
    if (end == w.c_str() || *end != '\0') return false;
    out.push_back(x);
  }
  return !out.empty();
}

}  // namespace h5_detail

/// Per-dataset statistics written with the structures (computed once at conversion).
struct HDF5DatasetMetadata {
  std::string name;
  std::size_t num_structures = 0, num_atoms = 0;
  std::vector<int> species;
  std::vector<double> reference_energy;  ///< per species, least squares over the dataset
  double energy_per_atom_mean = NAN, energy_per_atom_std = NAN, force_rms = NAN;
  double radius = 0;                     ///< > 0: degree_histogram holds the in-degrees at this cutoff
  std::vector<double> degree_histogram;
};

/// Write frames (each with the index of its dataset name) and their metadata to `path` (replaced).
inline void write_structures_hdf5(const std::string& path, const std::vector<Structure>& frames,
                                  const std::vector<int>& dataset_of, const std::vector<std::string>& dataset_names,
                                  const std::vector<HDF5DatasetMetadata>& metadata) {
  using namespace h5_detail;
  if (dataset_of.size() != frames.size()) throw std::invalid_argument("write_structures_hdf5: a dataset index per frame");
  Handle file(check(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), path + ": cannot create"), H5Fclose);
  const std::size_t S = frames.size();
  std::set<int> zs;
  std::vector<std::int64_t> offset{0};
  for (const auto& f : frames) {
    offset.push_back(offset.back() + std::int64_t(f.size()));
    zs.insert(f.numbers.begin(), f.numbers.end());
  }
  const std::vector<int> species(zs.begin(), zs.end());
  std::map<int, std::size_t> col;
  for (std::size_t k = 0; k < species.size(); ++k) col[species[k]] = k;
  const std::size_t N = std::size_t(offset.back());
  std::vector<double> cell(9 * S), energy(S, NAN), stress(9 * S, NAN), force_sq(S, 0.0), pos(3 * N), forces(3 * N, 0.0);
  std::vector<std::uint8_t> has_cell(S), pbc(3 * S), has_forces(S);
  std::vector<std::int32_t> dataset(S), comp(S * species.size(), 0), numbers(N);
  std::map<std::string, std::size_t> info_cols, array_cols;
  std::vector<double> nums;
  for (const auto& f : frames) {
    for (const auto& kv : f.info)
      if (numbers_of(kv.second, nums)) {
        auto it = info_cols.find(kv.first);
        if (it == info_cols.end()) info_cols[kv.first] = nums.size();
        else if (it->second != nums.size())
          throw HDF5Error(f.source + ": '" + kv.first + "' has " + std::to_string(nums.size()) + " values, earlier frames " +
                          std::to_string(it->second));
      }
    for (const auto& kv : f.array_cols) {
      auto it = array_cols.find(kv.first);
      if (it == array_cols.end()) array_cols[kv.first] = std::size_t(kv.second);
      else if (it->second != std::size_t(kv.second))
        throw HDF5Error(f.source + ": column '" + kv.first + "' has " + std::to_string(kv.second) + " values per atom, earlier frames " +
                        std::to_string(it->second));
    }
  }
  std::map<std::string, std::vector<double>> info, arrays;
  for (const auto& kv : info_cols) info[kv.first].assign(S * kv.second, NAN);
  for (const auto& kv : array_cols) arrays[kv.first].assign(N * kv.second, NAN);
  for (std::size_t s = 0; s < S; ++s) {
    const Structure& f = frames[s];
    const std::size_t a0 = std::size_t(offset[s]);
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 3; ++c) cell[9 * s + 3 * std::size_t(r) + std::size_t(c)] = f.cell[std::size_t(r)][std::size_t(c)];
    has_cell[s] = f.has_cell;
    for (int k = 0; k < 3; ++k) pbc[3 * s + std::size_t(k)] = f.pbc[std::size_t(k)];
    if (f.energy) energy[s] = *f.energy;
    if (f.stress)
      for (int q = 0; q < 9; ++q) stress[9 * s + std::size_t(q)] = (*f.stress)[std::size_t(q)];
    dataset[s] = dataset_of[s];
    has_forces[s] = !f.forces.empty();
    const StructureSummary sum = summarize(f);
    force_sq[s] = sum.force_sq;
    for (const auto& c : sum.composition) comp[s * species.size() + col[c.first]] = c.second;
    for (std::size_t i = 0; i < f.size(); ++i) {
      numbers[a0 + i] = f.numbers[i];
      for (int a = 0; a < 3; ++a) {
        pos[3 * (a0 + i) + std::size_t(a)] = f.positions[i][std::size_t(a)];
        if (!f.forces.empty()) forces[3 * (a0 + i) + std::size_t(a)] = f.forces[i][std::size_t(a)];
      }
    }
    for (const auto& kv : f.info)
      if (info_cols.count(kv.first) && numbers_of(kv.second, nums))
        for (std::size_t q = 0; q < nums.size(); ++q) info[kv.first][s * nums.size() + q] = nums[q];
    for (const auto& kv : f.arrays) {
      const std::size_t c = array_cols[kv.first];
      for (std::size_t q = 0; q < kv.second.size() && q < f.size() * c; ++q) arrays[kv.first][a0 * c + q] = kv.second[q];
    }
  }
  write_attr_string(file, "format", "hydragnn-structures");
  write_attr<std::int64_t>(file, "version", {1});
  write_attr<std::int64_t>(file, "num_structures", {std::int64_t(S)});
  write_attr<std::int64_t>(file, "num_atoms", {std::int64_t(N)});
  std::string names;
  for (std::size_t k = 0; k < dataset_names.size(); ++k) names += (k ? ";" : "") + dataset_names[k];
  write_attr_string(file, "dataset_names", names);
  {
    Handle g = group(file, "structures", true, path);
    write(g, "atom_offset", offset, 0, path);
    write(g, "cell", cell, 9, path);
    write(g, "has_cell", has_cell, 0, path);
    write(g, "pbc", pbc, 3, path);
    write(g, "energy", energy, 0, path);
    write(g, "stress", stress, 9, path);
    write(g, "dataset", dataset, 0, path);
    write(g, "force_sq", force_sq, 0, path);
    write(g, "has_forces", has_forces, 0, path);
    write(g, "composition", comp, species.size(), path);
    {
      Handle cd(H5Dopen2(g, "composition", H5P_DEFAULT), H5Dclose);
      write_attr<std::int32_t>(cd, "species", std::vector<std::int32_t>(species.begin(), species.end()));
    }
    Handle gi = group(g, "info", true, path);
    for (const auto& kv : info) write(gi, kv.first, kv.second, info_cols[kv.first], path);
  }
  {
    Handle g = group(file, "atoms", true, path);
    write(g, "numbers", numbers, 0, path);
    write(g, "positions", pos, 3, path);
    write(g, "forces", forces, 3, path);
    Handle ga = group(g, "arrays", true, path);
    for (const auto& kv : arrays) write(ga, kv.first, kv.second, array_cols[kv.first], path);
  }
  {
    Handle g = group(file, "metadata", true, path);
    for (const auto& m : metadata) {
      Handle gm = group(g, m.name, true, path);
      write_attr<std::int64_t>(gm, "num_structures", {std::int64_t(m.num_structures)});
      write_attr<std::int64_t>(gm, "num_atoms", {std::int64_t(m.num_atoms)});
      write_attr<std::int32_t>(gm, "species", std::vector<std::int32_t>(m.species.begin(), m.species.end()));
      write_attr<double>(gm, "reference_energy", m.reference_energy);
      write_attr<double>(gm, "energy_per_atom_mean", {m.energy_per_atom_mean});
      write_attr<double>(gm, "energy_per_atom_std", {m.energy_per_atom_std});
      write_attr<double>(gm, "force_rms", {m.force_rms});
      if (m.radius > 0) {
        write_attr<double>(gm, "radius", {m.radius});
        write_attr<double>(gm, "degree_histogram", m.degree_histogram);
      }
    }
  }
}

/// A structures file opened for reading: every per-structure array on open (small), atoms on demand.
class HDF5Structures {
 public:
  /// fapl: a file-access property list (H5P_DEFAULT, or an MPI-IO one from dist/).
  explicit HDF5Structures(const std::string& path, hid_t fapl = H5P_DEFAULT) : path_(path) {
    using namespace h5_detail;
    H5E_BEGIN_TRY { file_ = Handle(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl), H5Fclose); }
    H5E_END_TRY;
    if (file_.get() < 0) throw HDF5Error(path + ": cannot open as HDF5");
    if (read_attr_string(file_, "format", path) != "hydragnn-structures")
      throw HDF5Error(path + ": not a hydragnn-structures file (attribute 'format')");
    const auto ver = read_attr<std::int64_t>(file_, "version", path);
    if (ver.size() != 1 || ver[0] != 1) throw HDF5Error(path + ": unsupported version");
    dataset_names_ = split(read_attr_string(file_, "dataset_names", path), ';');
    Handle g = group(file_, "structures", false, path);
    auto ds = [&](const char* name) { return Handle(check(H5Dopen2(g, name, H5P_DEFAULT), path + ": no /structures/" + name), H5Dclose); };
    const hsize_t S = rows(ds("energy"));
    offset_ = read_rows<std::int64_t>(ds("atom_offset"), 0, S + 1, path + ": /structures/atom_offset");
    energy_ = read_rows<double>(ds("energy"), 0, S, path + ": /structures/energy");
    stress_ = read_rows<double>(ds("stress"), 0, S, path + ": /structures/stress");
    cell_ = read_rows<double>(ds("cell"), 0, S, path + ": /structures/cell");
    has_cell_ = read_rows<std::uint8_t>(ds("has_cell"), 0, S, path + ": /structures/has_cell");
    pbc_ = read_rows<std::uint8_t>(ds("pbc"), 0, S, path + ": /structures/pbc");
    dataset_ = read_rows<std::int32_t>(ds("dataset"), 0, S, path + ": /structures/dataset");
    force_sq_ = read_rows<double>(ds("force_sq"), 0, S, path + ": /structures/force_sq");
    has_forces_ = read_rows<std::uint8_t>(ds("has_forces"), 0, S, path + ": /structures/has_forces");
    {
      Handle c = ds("composition");
      species_ = read_attr<std::int32_t>(c, "species", path);
      comp_ = read_rows<std::int32_t>(c, 0, S, path + ": /structures/composition");
    }
    Handle gi = group(g, "info", false, path);
    H5Literate(gi, H5_INDEX_NAME, H5_ITER_INC, nullptr, &HDF5Structures::collect, &info_names_);
    for (const auto& n : info_names_) {
      Handle d(H5Dopen2(gi, n.c_str(), H5P_DEFAULT), H5Dclose);
      info_cols_[n] = columns(d);
      info_[n] = read_rows<double>(d, 0, S, path + ": /structures/info/" + n);
    }
    atoms_ = group(file_, "atoms", false, path);
    Handle ga = group(atoms_, "arrays", false, path);
    H5Literate(ga, H5_INDEX_NAME, H5_ITER_INC, nullptr, &HDF5Structures::collect, &array_names_);
    numbers_ = Handle(check(H5Dopen2(atoms_, "numbers", H5P_DEFAULT), path + ": no /atoms/numbers"), H5Dclose);
    positions_ = Handle(check(H5Dopen2(atoms_, "positions", H5P_DEFAULT), path + ": no /atoms/positions"), H5Dclose);
    forces_ = Handle(check(H5Dopen2(atoms_, "forces", H5P_DEFAULT), path + ": no /atoms/forces"), H5Dclose);
    for (const auto& n : array_names_) {
      arrays_.emplace(n, Handle(H5Dopen2(ga, n.c_str(), H5P_DEFAULT), H5Dclose));
      array_cols_[n] = columns(arrays_.at(n));
    }
  }

  std::size_t size() const { return energy_.size(); }
  std::size_t natoms(std::size_t i) const { return std::size_t(offset_[i + 1] - offset_[i]); }
  const std::vector<std::string>& dataset_names() const { return dataset_names_; }
  int dataset_of(std::size_t i) const { return dataset_[i]; }

  /// The summary of structure i, from the per-structure arrays alone.
  StructureSummary summary(std::size_t i) const {
    StructureSummary s;
    s.natoms = natoms(i);
    for (std::size_t k = 0; k < species_.size(); ++k)
      if (comp_[i * species_.size() + k]) s.composition.emplace_back(species_[k], comp_[i * species_.size() + k]);
    if (!std::isnan(energy_[i])) s.energy = energy_[i];
    if (has_forces_[i]) {
      s.force_sq = force_sq_[i];
      s.force_components = 3 * s.natoms;
    }
    return s;
  }

  /// Structures and atoms read by read() so far (a rank of a data-parallel run reads only its own).
  std::size_t structures_read() const { return structures_read_; }
  std::size_t atoms_read() const { return atoms_read_; }
  std::size_t num_atoms() const { return std::size_t(offset_.back()); }

  /// Structure i, its atoms read from the file.
  Structure read(std::size_t i) const { return std::move(read_run(i, i + 1).front()); }

  /// Structures idx (in that order, repeats allowed), each maximal run of consecutive indices read
  /// with one hyperslab per atom dataset (a rank's shard is mostly runs: one read per run instead of
  /// one per structure).
  std::vector<Structure> read_many(const std::vector<std::size_t>& idx) const {
    std::vector<std::size_t> pos(idx.size());  // positions in idx, by structure index
    std::iota(pos.begin(), pos.end(), std::size_t(0));
    std::stable_sort(pos.begin(), pos.end(), [&](std::size_t a, std::size_t b) { return idx[a] < idx[b]; });
    std::vector<Structure> out(idx.size());
    for (std::size_t r = 0; r < pos.size();) {
      std::size_t e = r + 1;  // the run: indices idx[pos[r]] .. idx[pos[e - 1]], repeats included
      while (e < pos.size() && idx[pos[e]] <= idx[pos[e - 1]] + 1) ++e;
      const std::size_t i0 = idx[pos[r]];
      std::vector<Structure> run = read_run(i0, idx[pos[e - 1]] + 1);
      for (std::size_t q = r; q < e; ++q) {
        Structure& s = run[idx[pos[q]] - i0];
        const bool again = q + 1 < e && idx[pos[q + 1]] == idx[pos[q]];  // a repeat still to place
        out[pos[q]] = again ? s : std::move(s);
      }
      r = e;
    }
    return out;
  }

  /// Structures [i0, i1), their atoms read in one piece per atom dataset.
  std::vector<Structure> read_run(std::size_t i0, std::size_t i1) const {
    using namespace h5_detail;
    if (i0 >= i1 || i1 > size())
      throw HDF5Error(path_ + ": structures " + std::to_string(i0) + ".." + std::to_string(i1) + " of " +
                      std::to_string(size()));
    const hsize_t b0 = hsize_t(offset_[i0]), nb = hsize_t(offset_[i1] - offset_[i0]);
    const std::string where = path_ + ": structures " + std::to_string(i0) + ".." + std::to_string(i1 - 1);
    structures_read_ += i1 - i0;
    atoms_read_ += std::size_t(nb);
    const auto z = read_rows<std::int32_t>(numbers_, b0, nb, where);
    const auto x = read_rows<double>(positions_, b0, nb, where);
    bool any_forces = false;
    for (std::size_t i = i0; i < i1; ++i) any_forces = any_forces || has_forces_[i];
    const auto fv = any_forces ? read_rows<double>(forces_, b0, nb, where) : std::vector<double>();
    std::map<std::string, std::vector<double>> arrays;
    for (const auto& n_ : array_names_) arrays[n_] = read_rows<double>(arrays_.at(n_), b0, nb, where);
    std::vector<Structure> out(i1 - i0);
    for (std::size_t i = i0; i < i1; ++i) {
      Structure& f = out[i - i0];
      const std::size_t a0 = std::size_t(offset_[i] - offset_[i0]), n = natoms(i);
      f.source = path_ + ": structure " + std::to_string(i);
      f.numbers.assign(z.begin() + long(a0), z.begin() + long(a0 + n));
      f.positions.resize(n);
      for (std::size_t k = 0; k < n; ++k) f.positions[k] = {x[3 * (a0 + k)], x[3 * (a0 + k) + 1], x[3 * (a0 + k) + 2]};
      if (has_forces_[i]) {
        f.forces.resize(n);
        for (std::size_t k = 0; k < n; ++k) f.forces[k] = {fv[3 * (a0 + k)], fv[3 * (a0 + k) + 1], fv[3 * (a0 + k) + 2]};
      }
      f.has_cell = has_cell_[i];
      for (std::size_t r = 0; r < 3; ++r)
        for (std::size_t c = 0; c < 3; ++c) f.cell[r][c] = cell_[9 * i + 3 * r + c];
      for (std::size_t k = 0; k < 3; ++k) f.pbc[k] = pbc_[3 * i + k];
      if (!std::isnan(energy_[i])) f.energy = energy_[i];
      if (!std::isnan(stress_[9 * i])) {
        std::array<double, 9> st{};
        for (std::size_t q = 0; q < 9; ++q) st[q] = stress_[9 * i + q];
        f.stress = st;
      }
      for (const auto& n_ : info_names_) {
        const std::size_t c = info_cols_.at(n_);
        const double* v = info_.at(n_).data() + i * c;
        if (std::isnan(v[0])) continue;
        std::ostringstream o;
        o.precision(17);
        for (std::size_t q = 0; q < c; ++q) o << (q ? " " : "") << v[q];
        f.info[n_] = o.str();
      }
      for (const auto& n_ : array_names_) {
        const std::size_t c = array_cols_.at(n_);
        const std::vector<double>& all = arrays.at(n_);
        if (n && std::isnan(all[a0 * c])) continue;
        f.arrays[n_].assign(all.begin() + long(a0 * c), all.begin() + long((a0 + n) * c));
        f.array_cols[n_] = int(c);
      }
    }
    return out;
  }

 private:
  static herr_t collect(hid_t, const char* name, const H5L_info_t*, void* out) {
    static_cast<std::vector<std::string>*>(out)->push_back(name);
    return 0;
  }
  std::string path_;
  h5_detail::Handle file_, atoms_, numbers_, positions_, forces_;
  std::vector<std::string> dataset_names_, info_names_, array_names_;
  std::vector<std::int64_t> offset_;
  std::vector<double> energy_, stress_, cell_, force_sq_;
  std::vector<std::uint8_t> has_cell_, pbc_, has_forces_;
  std::vector<std::int32_t> dataset_, species_, comp_;
  std::map<std::string, std::size_t> info_cols_, array_cols_;
  std::map<std::string, std::vector<double>> info_;
  std::map<std::string, h5_detail::Handle> arrays_;
  mutable std::size_t structures_read_ = 0, atoms_read_ = 0;
};

}  // namespace hydragnn
