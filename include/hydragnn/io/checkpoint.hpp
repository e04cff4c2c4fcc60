// SPDX-License-Identifier: BSD-3-Clause
// Checkpoints: one binary file, written atomically (temp file + rename).
//
//   "HYDRAGNN-CKPT 2\n"
//   u64 header_bytes, header (JSON: precision, model spec, training state, config)
//   u64 n, params[n] (T), u64 n_opt, m[n_opt], v[n_opt] (T)
//   u64 n_buf, buffers[n_buf] (double: BatchNorm running statistics, Model::buffers())
//   u64 FNV-1a-64 checksum of everything above
// Version 1 files (no buffers block) are read as having no buffers.
//
// Everything needed to resume bit-for-bit (weights, optimizer moments, buffers, step count, learning
// rate, scheduler and early-stopping counters, epoch) is stored. Corrupt, truncated or mismatched files
// give a CheckpointError naming the file and what is wrong.
#pragma once

#include <hydragnn/io/checkpoint_json.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace hydragnn {

struct CheckpointData {
  std::string precision;  ///< "float" or "double"
  ModelSpec spec;
  nlohmann::json options = nlohmann::json::object();  ///< the convolution's own options
  TrainState state;
  std::string config_json;  ///< the training config (canonical JSON), informational
  std::vector<double> params, opt_m, opt_v;  ///< stored in `precision`
  std::vector<double> buffers;               ///< stored in double
};

namespace detail {

inline std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

template <class T>
void put_array(std::string& out, const std::vector<double>& v) {
  const std::uint64_t n = v.size();
  out.append(reinterpret_cast<const char*>(&n), sizeof n);
  for (double x : v) {
    const T t = T(x);
    out.append(reinterpret_cast<const char*>(&t), sizeof t);
  }
}

}  // namespace detail

inline void write_checkpoint(const std::string& path, const CheckpointData& c) {
  const std::string header = checkpoint_header_to_json(CheckpointHeader{c.precision, c.spec, c.options, c.state, c.config_json});
  std::string out = "HYDRAGNN-CKPT 2\n";
  const std::uint64_t hn = header.size();
  out.append(reinterpret_cast<const char*>(&hn), sizeof hn);
  out += header;
  if (c.precision == "float") {
    detail::put_array<float>(out, c.params);
    detail::put_array<float>(out, c.opt_m);
    detail::put_array<float>(out, c.opt_v);
  } else {
    detail::put_array<double>(out, c.params);
    detail::put_array<double>(out, c.opt_m);
    detail::put_array<double>(out, c.opt_v);
  }
  detail::put_array<double>(out, c.buffers);
  const std::uint64_t sum = detail::fnv1a(out);
  out.append(reinterpret_cast<const char*>(&sum), sizeof sum);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw CheckpointError("cannot write checkpoint '" + tmp + "'");
    f.write(out.data(), std::streamsize(out.size()));
    f.flush();
    if (!f) throw CheckpointError("error while writing checkpoint '" + tmp + "' (disk full?)");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw CheckpointError("cannot rename '" + tmp + "' to '" + path + "'");
  }
}

inline CheckpointData read_checkpoint(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw CheckpointError("cannot open checkpoint '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string data = ss.str();
  const std::string magic = "HYDRAGNN-CKPT 2\n", magic1 = "HYDRAGNN-CKPT 1\n";
  const bool v1 = data.compare(0, magic1.size(), magic1) == 0;
  if (!v1 && data.compare(0, magic.size(), magic) != 0)
    throw CheckpointError(path + ": not a hydragnn checkpoint (bad magic)");
  if (data.size() < magic.size() + 16) throw CheckpointError(path + ": truncated checkpoint");
  std::uint64_t sum;
  std::memcpy(&sum, data.data() + data.size() - 8, 8);
  if (detail::fnv1a(data.substr(0, data.size() - 8)) != sum)
    throw CheckpointError(path + ": checksum mismatch (file corrupt or truncated)");
  std::size_t pos = magic.size();
  auto get_u64 = [&](const char* what) {
    if (pos + 8 > data.size() - 8) throw CheckpointError(path + ": truncated while reading " + std::string(what));
    std::uint64_t v;
    std::memcpy(&v, data.data() + pos, 8);
    pos += 8;
    return v;
  };
  const std::uint64_t hn = get_u64("header size");
  if (pos + hn > data.size() - 8) throw CheckpointError(path + ": truncated header");
  const CheckpointHeader h = checkpoint_header_from_json(data.substr(pos, hn), path);
  pos += hn;
  CheckpointData c;
  c.precision = h.precision;
  c.spec = h.spec;
  c.options = h.options;
  c.state = h.state;
  c.config_json = h.config_json;
  const std::size_t tsize = c.precision == "float" ? 4 : c.precision == "double" ? 8 : 0;
  if (tsize == 0) throw CheckpointError(path + ": unknown precision '" + c.precision + "'");
  auto get_array = [&](std::vector<double>& v, const char* what, std::size_t tsize) {
    const std::uint64_t n = get_u64(what);
    if (pos + n * tsize > data.size() - 8) throw CheckpointError(path + ": truncated " + std::string(what));
    v.resize(n);
    for (std::uint64_t i = 0; i < n; ++i) {
      if (tsize == 4) {
        float x;
        std::memcpy(&x, data.data() + pos, 4);
        v[i] = x;
      } else {
        std::memcpy(&v[i], data.data() + pos, 8);
      }
      pos += tsize;
    }
  };
  get_array(c.params, "parameters", tsize);
  get_array(c.opt_m, "optimizer state m", tsize);
  get_array(c.opt_v, "optimizer state v", tsize);
  if (!v1) get_array(c.buffers, "buffers", 8);
  if (pos != data.size() - 8) throw CheckpointError(path + ": trailing bytes after the " + std::string(v1 ? "optimizer state" : "buffers"));
  return c;
}

}  // namespace hydragnn
