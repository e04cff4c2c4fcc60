// SPDX-License-Identifier: BSD-3-Clause
// Data-parallel training data: the training and validation sets cut into V virtual shards, V = ranks x
// accumulate. Rank r owns shards r*A .. r*A + A - 1 (A = accumulate) and keeps only their structures.
// Every step takes one micro-batch of batch_size structures from each shard; their gradients are
// summed in shard order (within a rank, then across ranks in rank order), so `mpirun -np P` computes
// bitwise what one rank computes with accumulate P.
//
// Shards are balanced by atom count: the structures sorted by size (largest first, ties by position)
// are dealt out in a snake (0, 1, .., V-1, V-1, .., 0, 0, ..), so shard sizes differ by at most one
// structure and every shard holds the same mix of small and large structures.
//
// Several datasets (head branches, StructureSummary::branch): as HydraGNN splits its ranks among the
// datasets in proportion to their sizes, the V shards are split among the branches in proportion to
// their structure counts (largest remainder, at least one shard each; shards of branch 0 first) and a
// branch's structures are dealt out over its own shards only, so every micro-batch holds one dataset
// and a rank reads the structures of one dataset (or of the few its shards belong to). With fewer
// shards than branches every shard takes structures of every branch (shard_plan).
#pragma once

#include <hydragnn/train/collective.hpp>
#include <hydragnn/train/dataset.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace hydragnn {

/// Shard of every structure (0 .. V-1), balanced by atom count.
inline std::vector<int> shard_by_atoms(const std::vector<std::size_t>& natoms, int V) {
  if (V < 1) throw std::invalid_argument("hydragnn::shard_by_atoms: " + std::to_string(V) + " shards");
  std::vector<std::size_t> by_size(natoms.size());
  std::iota(by_size.begin(), by_size.end(), 0);
  std::stable_sort(by_size.begin(), by_size.end(), [&](std::size_t a, std::size_t b) { return natoms[a] > natoms[b]; });
  std::vector<int> shard(natoms.size());
  for (std::size_t p = 0; p < by_size.size(); ++p) {
    const std::size_t round = p / std::size_t(V), k = p % std::size_t(V);
    shard[by_size[p]] = int(round % 2 == 0 ? k : std::size_t(V) - 1 - k);
  }
  return shard;
}
/// Shards per branch for V shards: in proportion to the branches' structure counts (largest
/// remainder; ties to the lower branch), at least one each; empty when V is smaller than the number of
/// branches that have structures or when there is one such branch.
inline std::vector<int> shards_per_branch(const std::vector<std::size_t>& count, int V) {
  std::size_t total = 0, present = 0;
  for (std::size_t c : count) total += c, present += c > 0;
  if (present <= 1 || std::size_t(V) < present) return {};
  std::vector<int> n(count.size(), 0);
  std::vector<double> want(count.size(), 0.0);
  int given = 0;
  for (std::size_t b = 0; b < count.size(); ++b) {
    if (count[b] == 0) continue;
    want[b] = double(V) * double(count[b]) / double(total);
    n[b] = std::max(1, int(want[b]));
    given += n[b];
  }
  while (given != V) {  // hand out (or take back) one shard at a time by the remainders
    std::size_t pick = count.size();
    for (std::size_t b = 0; b < count.size(); ++b) {
      if (count[b] == 0 || (given > V && n[b] <= 1)) continue;
      const double r = want[b] - n[b];
      if (pick == count.size() || (given < V ? r > want[pick] - n[pick] : r < want[pick] - n[pick])) pick = b;
    }
    n[pick] += given < V ? 1 : -1;
    given += given < V ? 1 : -1;
  }
  return n;
}

/// Shard of every structure: split among the branches in proportion to their sizes (shards_per_branch,
/// each branch's structures balanced by atom count over its shards), or, with one branch or fewer
/// shards than branches, shard_by_atoms over all structures.
inline std::vector<int> shard_plan(const std::vector<StructureSummary>& ss, int V, const std::vector<int>& per_branch) {
  std::vector<std::size_t> natoms;
  for (const auto& s : ss) natoms.push_back(s.natoms);
  if (per_branch.empty()) return shard_by_atoms(natoms, V);
  std::vector<int> shard(ss.size(), 0);
  int first = 0;
  for (std::size_t b = 0; b < per_branch.size(); ++b) {
    if (per_branch[b] == 0) continue;
    std::vector<std::size_t> members, sizes;
    for (std::size_t i = 0; i < ss.size(); ++i)
      if (ss[i].branch == int(b)) members.push_back(i), sizes.push_back(ss[i].natoms);
    const std::vector<int> sub = shard_by_atoms(sizes, per_branch[b]);
    for (std::size_t j = 0; j < members.size(); ++j) shard[members[j]] = first + sub[j];
    first += per_branch[b];
  }
  return shard;
}

inline std::vector<std::size_t> atom_counts(const std::vector<StructureSummary>& ss) {
  std::vector<std::size_t> n;
  n.reserve(ss.size());
  for (const auto& s : ss) n.push_back(s.natoms);
  return n;
}
inline std::vector<int> shard_by_atoms(const Dataset& ds, int V) {
  std::vector<std::size_t> n;
  for (const auto& f : ds.frames) n.push_back(f.size());
  return shard_by_atoms(n, V);
}

/// Global facts of the training set that every rank needs (computed before a rank drops the
/// structures of other ranks' shards).
struct TrainingSetSummary {
  SpeciesMap species;
  std::vector<double> ref_energy;
  double energy_scale = 1.0;
  std::size_t train_size = 0, val_size = 0;
  std::size_t uniform_atoms = 0;  ///< the atom count of every training structure when all have the same, else 0
};

/// Species, reference energies (per head branch: fitted on each branch's structures), energy scale.
inline TrainingSetSummary summarize_training_set(const std::vector<StructureSummary>& train, std::size_t val_size) {
  TrainingSetSummary s;
  s.species = species_of(train);
  int branches = 1;
  for (const auto& f : train) branches = std::max(branches, f.branch + 1);
  s.ref_energy = fit_reference_energies(train, s.species, branches);
  s.energy_scale = energy_scale_of(train, s.species, s.ref_energy);
  s.train_size = train.size();
  s.val_size = val_size;
  s.uniform_atoms = train.empty() ? 0 : train.front().natoms;
  for (const auto& f : train)
    if (f.natoms != s.uniform_atoms) s.uniform_atoms = 0;
  return s;
}

/// One rank's part of a data-parallel run's data.
struct ShardedData {
  int num_shards = 1;   ///< V
  int first_shard = 0;  ///< this rank's first shard (rank x A)
  Dataset train, val;   ///< this rank's structures (of all its shards)
  /// per local shard: indices into train / val, in the order of the global datasets
  std::vector<std::vector<std::size_t>> train_shards, val_shards;
  std::vector<std::size_t> train_shard_sizes;  ///< every shard's size (all V)
  std::vector<std::size_t> train_shard_atoms;  ///< every shard's atoms (all V)
  TrainingSetSummary summary;
  std::vector<int> shards_per_branch;  ///< shards of each head branch (empty: every shard mixes the branches)
  int local_shards() const { return int(train_shards.size()); }
  /// Structures of the largest training shard (of all V).
  std::size_t largest_shard() const {
    return train_shard_sizes.empty() ? 0 : *std::max_element(train_shard_sizes.begin(), train_shard_sizes.end());
  }
  /// Steps of an epoch: the largest shard cut into batches (a shard that runs out contributes nothing).
  std::size_t steps_per_epoch(std::size_t batch_size) const { return (largest_shard() + batch_size - 1) / batch_size; }
};

/// Reads the structures of the given global indices (ascending) of the training (val = false) or
/// validation set into ds (frames, and graphs where the source has them).
using StructureLoader = std::function<void(bool val, const std::vector<std::size_t>& global, Dataset& ds)>;

/// Cut the global training and validation sets, known by their summaries, into ranks x accumulate
/// shards and load this rank's structures.
inline ShardedData shard_structures(const std::vector<StructureSummary>& train, const std::vector<StructureSummary>& val,
                                    int rank, int ranks, int accumulate, const StructureLoader& load) {
  if (ranks < 1 || rank < 0 || rank >= ranks || accumulate < 1)
    throw std::invalid_argument("hydragnn::shard_structures: rank " + std::to_string(rank) + " of " +
                                std::to_string(ranks) + ", accumulate " + std::to_string(accumulate));
  ShardedData d;
  d.num_shards = ranks * accumulate;
  d.first_shard = rank * accumulate;
  d.summary = summarize_training_set(train, val.size());
  d.train_shard_sizes.assign(std::size_t(d.num_shards), 0);
  d.train_shard_atoms.assign(std::size_t(d.num_shards), 0);
  // shards per branch from the training set's branch sizes; the validation set follows the same split
  std::vector<std::size_t> count;
  for (const auto& f : train) {
    if (std::size_t(f.branch) >= count.size()) count.resize(std::size_t(f.branch) + 1, 0);
    ++count[std::size_t(f.branch)];
  }
  d.shards_per_branch = shards_per_branch(count, d.num_shards);
  auto keep = [&](const std::vector<StructureSummary>& all, bool is_val, Dataset& mine,
                  std::vector<std::vector<std::size_t>>& shards) {
    std::vector<int> split = d.shards_per_branch;
    if (is_val && !split.empty())  // validation structures of a branch without training shards: mixed
      for (const auto& f : all)
        if (std::size_t(f.branch) >= split.size() || split[std::size_t(f.branch)] == 0) split.clear();
    const std::vector<int> shard = shard_plan(all, d.num_shards, split);
    std::vector<std::size_t> global;
    std::vector<int> local_shard;
    for (std::size_t i = 0; i < all.size(); ++i) {
      if (!is_val) {
        ++d.train_shard_sizes[std::size_t(shard[i])];
        d.train_shard_atoms[std::size_t(shard[i])] += all[i].natoms;
      }
      const int a = shard[i] - d.first_shard;
      if (a < 0 || a >= accumulate) continue;
      global.push_back(i);
      local_shard.push_back(a);
    }
    load(is_val, global, mine);
    shards.assign(std::size_t(accumulate), {});
    for (std::size_t k = 0; k < global.size(); ++k) shards[std::size_t(local_shard[k])].push_back(k);
  };
  keep(train, false, d.train, d.train_shards);
  keep(val, true, d.val, d.val_shards);
  return d;
}

/// The same for datasets held whole (graphs kept where they have them; otherwise build them on the result).
inline ShardedData shard_datasets(const Dataset& train, const Dataset& val, int rank, int ranks, int accumulate) {
  auto copy = [&](bool is_val, const std::vector<std::size_t>& global, Dataset& mine) {
    const Dataset& all = is_val ? val : train;
    mine.name = all.name;
    for (std::size_t i : global) {
      mine.frames.push_back(all.frames[i]);
      if (!all.graphs.empty()) mine.graphs.push_back(all.graphs[i]);
    }
  };
  return shard_structures(summaries_of(train), summaries_of(val), rank, ranks, accumulate, copy);
}

/// A position of an epoch order that holds no structure (the shard is one structure short).
inline constexpr std::size_t no_structure = std::size_t(-1);

/// The order of a local shard's structures in an epoch: a pure function of (seed, epoch), so a resumed
/// run sees the same order. One shard: its structures shuffled, as a single-process run
/// shuffles its data. Several shards: each shard's structures sorted by size (largest first, ties by
/// position), then every shard takes the same random permutation of those size ranks, so at every
/// step all shards draw structures of the same size ranks and the micro-batches of one step have
/// nearly the same atom counts (shards are dealt out in a snake, so rank k of every shard is about
/// the same size); a shard one structure short has a hole (no_structure) where the others have
/// their last rank. `largest` is the size of the largest shard.
inline std::vector<std::size_t> epoch_order(const std::vector<std::size_t>& members, const Dataset& ds,
                                            std::uint64_t seed, int epoch, int shards, std::size_t largest) {
  std::mt19937_64 rng(seed * 1000003ull + std::uint64_t(epoch));
  if (shards == 1) {
    std::vector<std::size_t> order = members;
    std::shuffle(order.begin(), order.end(), rng);
    return order;
  }
  std::vector<std::size_t> by_size = members;
  std::stable_sort(by_size.begin(), by_size.end(),
                   [&](std::size_t a, std::size_t b) { return ds.frames[a].size() > ds.frames[b].size(); });
  std::vector<std::size_t> rank(largest);
  std::iota(rank.begin(), rank.end(), 0);
  std::shuffle(rank.begin(), rank.end(), rng);
  std::vector<std::size_t> order(largest);
  for (std::size_t k = 0; k < largest; ++k) order[k] = rank[k] < by_size.size() ? by_size[rank[k]] : no_structure;
  return order;
}

/// Oversampling (HydraGNN's --oversampling): the order in which a shard draws `draws` structures in an
/// epoch, as torch's RandomSampler(replacement=False, num_samples=draws) draws them: whole shuffles of
/// the shard's structures one after another, the last one cut short. Every structure comes
/// floor(draws/s) or ceil(draws/s) times (s structures), so the shards of a small dataset keep drawing
/// full micro-batches until the largest shard is through instead of sitting out the end of the epoch.
/// A pure function of (seed, epoch, global shard index): resumed and multi-rank runs see the same
/// order. An empty shard draws nothing.
inline std::vector<std::size_t> oversampled_order(const std::vector<std::size_t>& members, std::uint64_t seed, int epoch,
                                                  int shard, std::size_t draws) {
  std::vector<std::size_t> order;
  if (members.empty()) return order;
  std::seed_seq sq{std::uint32_t(seed), std::uint32_t(seed >> 32), std::uint32_t(epoch), std::uint32_t(shard)};
  std::mt19937_64 rng(sq);
  std::vector<std::size_t> perm = members;
  order.reserve(draws);
  while (order.size() < draws) {
    std::shuffle(perm.begin(), perm.end(), rng);
    for (std::size_t k = 0; k < perm.size() && order.size() < draws; ++k) order.push_back(perm[k]);
  }
  return order;
}

}  // namespace hydragnn
