// JSON loading (nlohmann-json) and the seed test-vector cases of tests/data/seed_sparq.
// Host only.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <cstdint>
#include <dirent.h>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sparq/config.hpp"
#include "sparq/problem.hpp"
#include "support/npy.hpp"

namespace sparq::test {

/// Parses a JSON file; throws std::runtime_error naming the file if it is missing or invalid.
inline nlohmann::json load_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("json file '" + path + "': cannot open (missing test data?)");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error("json file '" + path + "': " + e.what());
  }
}

/// Directory of the checked-in test data: $SPARQ_TEST_DATA_DIR when set (a build carried to
/// another machine), else the path CMake compiled in.
inline std::string test_data_dir() {
  if (const char* env = std::getenv("SPARQ_TEST_DATA_DIR"); env != nullptr && *env != 0) return env;
#ifdef SPARQ_TEST_DATA_DIR
  return SPARQ_TEST_DATA_DIR;
#else
  return "tests/data";
#endif
}

/// One case of tests/data/seed_sparq (see tests/data/README.md).
struct SeedCase {
  std::string name;
  int B = 0, H = 0, S = 0, D = 0, r = 0, k = 0;
  std::vector<int> lens;
  bool reallocation = true;
  std::vector<float> q;   ///< [B, H, D]
  std::vector<float> K;   ///< [B, H, S, D]
  std::vector<float> V;   ///< [B, H, S, D]
  std::vector<double> y;  ///< [B, H, D], expected output
};

namespace seed_detail {
inline void check_shape(const NpyArray& a, const std::vector<int64_t>& want,
                        const std::string& what) {
  if (a.shape != want) {
    std::string s = what + ": shape mismatch, expected (";
    for (int64_t x : want)
      s += std::to_string(x) + ",";
    s += ") got (";
    for (int64_t x : a.shape)
      s += std::to_string(x) + ",";
    throw std::runtime_error(s + ")");
  }
}
}  // namespace seed_detail

/// Loads case `name` from `dir`; throws with the file and problem when anything is missing.
inline SeedCase load_seed_case(const std::string& dir, const std::string& name) {
  const std::string base = dir + "/" + name;
  const nlohmann::json j = load_json(base + ".json");
  SeedCase c;
  try {
    c.name = name;
    c.B = j.at("B").get<int>();
    c.H = j.at("H").get<int>();
    c.S = j.at("S").get<int>();
    c.D = j.at("D").get<int>();
    c.r = j.at("r").get<int>();
    c.k = j.at("k").get<int>();
    c.lens = j.at("lens").get<std::vector<int>>();
    c.reallocation = j.at("reallocation").get<bool>();
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error("json file '" + base + ".json': " + e.what());
  }
  if (static_cast<int>(c.lens.size()) != c.B)
    throw std::runtime_error("json file '" + base + ".json': lens has " +
                             std::to_string(c.lens.size()) + " entries, B is " +
                             std::to_string(c.B));
  const NpyArray q = load_npy(base + ".q.npy");
  const NpyArray K = load_npy(base + ".K.npy");
  const NpyArray V = load_npy(base + ".V.npy");
  const NpyArray y = load_npy(base + ".y.npy");
  seed_detail::check_shape(q, {c.B, c.H, c.D}, base + ".q.npy");
  seed_detail::check_shape(K, {c.B, c.H, c.S, c.D}, base + ".K.npy");
  seed_detail::check_shape(V, {c.B, c.H, c.S, c.D}, base + ".V.npy");
  seed_detail::check_shape(y, {c.B, c.H, c.D}, base + ".y.npy");
  c.q = q.as_float();
  c.K = K.as_float();
  c.V = V.as_float();
  c.y = y.data;
  return c;
}

/// The problem of a seed case: one query head per KV head, capacity S.
inline DecodeProblem seed_problem(const SeedCase& c) {
  DecodeProblem p;
  p.batch = c.B;
  p.num_q_heads = c.H;
  p.num_kv_heads = c.H;
  p.head_dim = c.D;
  p.capacity = c.S;
  return p;
}

/// The configuration of a seed case: its r, k and reallocation, no local window.
inline SparqConfig seed_config(const SeedCase& c) {
  SparqConfig cfg;
  cfg.r = c.r;
  cfg.k = c.k;
  cfg.local_window = 0;
  cfg.reallocation = c.reallocation;
  return cfg;
}

/// Names of all cases (NAME.json files) in `dir`, sorted; empty if the directory is missing.
inline std::vector<std::string> list_seed_cases(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      const std::string f = e->d_name;
      if (f.size() > 5 && f.compare(f.size() - 5, 5, ".json") == 0)
        names.push_back(f.substr(0, f.size() - 5));
    }
    closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace sparq::test
