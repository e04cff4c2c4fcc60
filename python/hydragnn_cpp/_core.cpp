// SPDX-License-Identifier: BSD-3-Clause
// hydragnn_cpp._core: the C++ Potential (hydragnn/potential.hpp) for Python. Kokkos is initialised
// when the module is imported and finalised at interpreter exit, after every Potential still alive
// has released its device memory.
#include <hydragnn/potential.hpp>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <set>
#include <stdexcept>
#include <string>

namespace py = pybind11;

namespace {

struct PyPotential;
std::set<PyPotential*>& live() {
  static std::set<PyPotential*> s;
  return s;
}

struct PyPotential {
  std::unique_ptr<hydragnn::Potential<>> pot;
  hydragnn::Structure s;

  PyPotential(const std::string& path, const std::string& precision, const std::string& branch) {
    if (!Kokkos::is_initialized()) throw std::runtime_error("hydragnn_cpp: Kokkos has been finalised (interpreter exit)");
    pot = std::make_unique<hydragnn::Potential<>>(path, hydragnn::precision_from_name(precision));
    pot->set_branch(branch);
    live().insert(this);
  }
  ~PyPotential() { live().erase(this); }
  hydragnn::Potential<>& get() {
    if (!pot) throw std::runtime_error("hydragnn_cpp: this Potential was released at interpreter exit");
    return *pot;
  }

  py::dict compute(py::array_t<int, py::array::c_style | py::array::forcecast> numbers,
                   py::array_t<double, py::array::c_style | py::array::forcecast> positions,
                   py::array_t<double, py::array::c_style | py::array::forcecast> cell, std::vector<bool> pbc,
                   bool per_atom) {
    const auto n = numbers.shape(0);
    if (numbers.ndim() != 1 || positions.ndim() != 2 || positions.shape(0) != n || positions.shape(1) != 3)
      throw std::invalid_argument("hydragnn_cpp: numbers must be (n,) and positions (n, 3)");
    if (cell.ndim() != 2 || cell.shape(0) != 3 || cell.shape(1) != 3) throw std::invalid_argument("hydragnn_cpp: cell must be (3, 3)");
    if (pbc.size() != 3) throw std::invalid_argument("hydragnn_cpp: pbc must have 3 entries");
    s.numbers.assign(numbers.data(), numbers.data() + n);
    s.positions.resize(std::size_t(n));
    const double* x = positions.data();
    for (py::ssize_t i = 0; i < n; ++i)
      for (int a = 0; a < 3; ++a) s.positions[i][a] = x[3 * i + a];
    const double* c = cell.data();
    bool any = false;
    for (int k = 0; k < 3; ++k)
      for (int a = 0; a < 3; ++a) {
        s.cell[k][a] = c[3 * k + a];
        any = any || c[3 * k + a] != 0.0;
      }
    s.has_cell = any;
    s.pbc = {bool(pbc[0]), bool(pbc[1]), bool(pbc[2])};
    s.source = "ase.Atoms";
    hydragnn::PotentialOutput out;
    {
      py::gil_scoped_release release;
      out = get().compute(Kokkos::DefaultExecutionSpace(), s, per_atom);
    }
    py::dict d;
    d["energy"] = out.energy;
    py::array_t<double> f({py::ssize_t(n), py::ssize_t(3)});
    std::copy(out.forces.begin(), out.forces.end(), f.mutable_data());
    d["forces"] = f;
    py::array_t<double> w({py::ssize_t(3), py::ssize_t(3)});
    std::copy(out.virial.begin(), out.virial.end(), w.mutable_data());
    d["virial"] = w;
    py::array_t<double> st({py::ssize_t(3), py::ssize_t(3)});
    std::copy(out.stress.begin(), out.stress.end(), st.mutable_data());
    d["stress"] = st;
    if (per_atom) {
      py::array_t<double> ea(static_cast<py::ssize_t>(n));
      std::copy(out.atom_energy.begin(), out.atom_energy.end(), ea.mutable_data());
      d["energies"] = ea;
      py::array_t<double> va({py::ssize_t(n), py::ssize_t(3), py::ssize_t(3)});
      std::copy(out.atom_virial.begin(), out.atom_virial.end(), va.mutable_data());
      d["virials"] = va;
    }
    return d;
  }
};

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "hydragnn's C++ potential (hydragnn/potential.hpp): energies, forces, stress of a trained checkpoint";
  if (!Kokkos::is_initialized()) Kokkos::initialize();
  py::module_::import("atexit").attr("register")(py::cpp_function([]() {
    for (PyPotential* p : live()) p->pot.reset();  // device memory goes before Kokkos does
    if (Kokkos::is_initialized()) Kokkos::finalize();
  }));
  py::class_<PyPotential>(m, "Potential")
      .def(py::init<const std::string&, const std::string&, const std::string&>(), py::arg("checkpoint"),
           py::arg("precision") = "checkpoint", py::arg("branch") = "",
           "Load a checkpoint (any model type); precision: checkpoint, float32 or float64 (network maths); branch: "
           "the head branch of a multi-dataset model (default: the first)")
      .def("compute", &PyPotential::compute, py::arg("numbers"), py::arg("positions"), py::arg("cell"), py::arg("pbc"),
           py::arg("per_atom") = false,
           "energy (eV), forces (n, 3) eV/A, virial (3, 3) eV, stress (3, 3) eV/A^3 (ASE sign; NaN unless 3-D "
           "periodic); per_atom: energies (n,), virials (n, 3, 3)")
      .def_property_readonly("cutoff", [](PyPotential& p) { return p.get().cutoff(); })
      .def_property_readonly("elements", [](PyPotential& p) { return p.get().elements(); })
      .def_property_readonly("precision", [](PyPotential& p) { return p.get().precision(); })
      .def_property_readonly("mpnn_type", [](PyPotential& p) { return p.get().spec().mpnn_type; })
      .def_property_readonly("branches", [](PyPotential& p) { return p.get().branches(); })
      .def_property_readonly("branch", [](PyPotential& p) { return p.get().branch(); });
  m.attr("kokkos_version") = hydragnn::compat::kokkos_version_string();
}
