// SPDX-License-Identifier: BSD-3-Clause
// The training log DIR/metrics.jsonl: one JSON object per epoch.
#pragma once

#include <hydragnn/io/checkpoint_json.hpp>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace hydragnn {

struct EpochRecord {
  int epoch = 0;
  double train_loss = 0, val_loss = 0;
  double val_energy_mae_per_atom = 0, val_force_mae = 0;  ///< NaN when the data have no such label
  double lr = 0, seconds = 0;
  /// Per head branch (models with several): name, validation energy MAE per atom and force MAE.
  struct Branch {
    std::string name;
    double val_energy_mae_per_atom = 0, val_force_mae = 0;
  };
  std::vector<Branch> branches;
};

/// One line of metrics.jsonl (without the newline); non-finite numbers are written as null.
inline std::string epoch_record_json(const EpochRecord& r) {
  nlohmann::json j{{"epoch", r.epoch},
                   {"train_loss", r.train_loss},
                   {"val_loss", r.val_loss},
                   {"val_energy_mae_per_atom", detail::num(r.val_energy_mae_per_atom)},
                   {"val_force_mae", detail::num(r.val_force_mae)},
                   {"lr", r.lr},
                   {"seconds", r.seconds}};
  for (const auto& b : r.branches)
    j["branches"].push_back(nlohmann::json{{"name", b.name},
                                           {"val_energy_mae_per_atom", detail::num(b.val_energy_mae_per_atom)},
                                           {"val_force_mae", detail::num(b.val_force_mae)}});
  return j.dump();
}

}  // namespace hydragnn
