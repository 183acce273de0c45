// The .npy reader of tests/support: valid version 1.0 / 2.0 files, and malformed ones rejected
// with a message naming the problem.
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "support/npy.hpp"

namespace {

using sparq::test::NpyArray;
using sparq::test::parse_npy;

// Builds .npy bytes with the given header dict text, version and payload.
std::string make_npy(const std::string& dict, const std::string& payload, int major = 1) {
  std::string header = dict;
  const size_t prefix = major == 1 ? 10 : 12;
  while ((prefix + header.size() + 1) % 64 != 0)
    header += ' ';
  header += '\n';
  std::string out = std::string("\x93NUMPY", 6);
  out += static_cast<char>(major);
  out += static_cast<char>(0);
  const uint32_t len = static_cast<uint32_t>(header.size());
  out += static_cast<char>(len & 0xff);
  out += static_cast<char>((len >> 8) & 0xff);
  if (major != 1) {
    out += static_cast<char>((len >> 16) & 0xff);
    out += static_cast<char>((len >> 24) & 0xff);
  }
  return out + header + payload;
}

template <typename F>
std::string bytes_of(const std::vector<F>& v) {
  std::string s(v.size() * sizeof(F), '\0');
  std::memcpy(&s[0], v.data(), s.size());
  return s;
}

void expect_error(const std::string& bytes, const std::string& fragment) {
  try {
    parse_npy(bytes, "case.npy");
    ADD_FAILURE() << "no error; expected one mentioning '" << fragment << "'";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("case.npy"), std::string::npos) << msg;
    EXPECT_NE(msg.find(fragment), std::string::npos) << msg;
  }
}

TEST(NpyReader, ReadsFloat32Version1) {
  const std::vector<float> v = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, -1e-3f};
  const NpyArray a = parse_npy(
      make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", bytes_of(v)));
  EXPECT_EQ(a.descr, "<f4");
  ASSERT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  ASSERT_EQ(a.data.size(), v.size());
  for (size_t i = 0; i < v.size(); ++i)
    EXPECT_EQ(a.data[i], static_cast<double>(v[i]));
}

TEST(NpyReader, ReadsFloat64Version2And1D) {
  const std::vector<double> v = {0.1, 0.2, 0.3};
  const NpyArray a = parse_npy(
      make_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", bytes_of(v), 2));
  EXPECT_EQ(a.descr, "<f8");
  ASSERT_EQ(a.shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(a.data, v);
}

TEST(NpyReader, ReadsScalarAndEmpty) {
  const NpyArray s = parse_npy(
      make_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (), }", bytes_of<double>({4.0})));
  EXPECT_TRUE(s.shape.empty());
  ASSERT_EQ(s.data.size(), 1u);
  EXPECT_EQ(s.data[0], 4.0);
  const NpyArray e =
      parse_npy(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 5), }", ""));
  EXPECT_EQ(e.size(), 0);
}

TEST(NpyReader, RejectsMalformedFiles) {
  const std::string f4 = bytes_of<float>({1, 2});
  expect_error("not a numpy file at all", "magic");
  expect_error("", "magic");
  std::string v3 = make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", f4);
  v3[6] = 3;
  expect_error(v3, "version");
  std::string v11 = make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", f4);
  v11[7] = 1;
  expect_error(v11, "version");
  expect_error(make_npy("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", f4),
               "big-endian");
  expect_error(make_npy("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", f4),
               "unsupported dtype");
  expect_error(make_npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", f4), "Fortran");
  expect_error(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", f4),
               "truncated data");
  expect_error(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", f4),
               "trailing bytes");
  expect_error(make_npy("{'descr': '<f4', 'fortran_order': False, }", f4), "shape");
  expect_error(make_npy("{'fortran_order': False, 'shape': (2,), }", f4), "descr");
  expect_error(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (a,), }", f4), "shape");
  std::string cut = make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", f4);
  expect_error(cut.substr(0, 20), "truncated header");
}

// Found by fuzzing: a 29-digit dimension threw std::out_of_range from std::stoll, and a shape
// whose element count wraps (to zero for 2^62 * 4) passed the size check with no data, leaving the
// shape to promise elements that were never read.
TEST(NpyReader, RejectsShapesThatOverflow) {
  const std::string f4 = bytes_of<float>({1.0f, 2.0f});
  expect_error(
      make_npy(
          "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 77777777777777777777777777777), }",
          f4),
      "too large");
  expect_error(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (999999999999999, "
                        "999999999999999, 2048), }",
                        ""),
               "truncated data");
  expect_error(make_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1, 3), }", f4),
               "truncated data");
  // An empty array is still fine, whatever its other dimensions.
  const NpyArray e = parse_npy(
      make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (999999999999999, 0), }", ""));
  EXPECT_EQ(e.size(), 0);
}

TEST(NpyReader, MissingFileNamesThePath) {
  try {
    sparq::test::load_npy("/nonexistent/dir/x.npy");
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/x.npy"), std::string::npos);
  }
}

}  // namespace
