// Minimal reader of NumPy .npy files: format version 1.0 / 2.0 headers, little-endian, C order,
// dtypes '<f4' and '<f8'. Malformed or unsupported files throw std::runtime_error with a
// message that names the file and the problem. Host only; no GoogleTest dependency.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

namespace sparq::test {

/// A loaded array: its shape and its values converted to double (exact for '<f4' and '<f8').
struct NpyArray {
  std::string descr;           ///< '<f4' or '<f8'
  std::vector<int64_t> shape;  ///< empty for a scalar
  std::vector<double> data;    ///< C order

  int64_t size() const {
    int64_t n = 1;
    for (int64_t s : shape)
      n *= s;
    return n;
  }
  std::vector<float> as_float() const { return std::vector<float>(data.begin(), data.end()); }
};

namespace npy_detail {

[[noreturn]] inline void fail(const std::string& name, const std::string& what) {
  throw std::runtime_error("npy file '" + name + "': " + what);
}

inline bool host_is_little_endian() {
  const uint16_t one = 1;
  unsigned char c = 0;
  std::memcpy(&c, &one, 1);
  return c == 1;
}

/// The value text after 'key': in a Python dict literal, up to the next top-level ',' or '}'.
inline std::string dict_value(const std::string& header, const std::string& key,
                              const std::string& name) {
  size_t pos = header.find("'" + key + "'");
  if (pos == std::string::npos) pos = header.find("\"" + key + "\"");
  if (pos == std::string::npos) fail(name, "header has no '" + key + "' entry");
  pos = header.find(':', pos + key.size() + 2);
  if (pos == std::string::npos) fail(name, "header entry '" + key + "' has no value");
  ++pos;
  while (pos < header.size() && header[pos] == ' ')
    ++pos;
  int depth = 0;
  size_t end = pos;
  for (; end < header.size(); ++end) {
    const char ch = header[end];
    if (ch == '(' || ch == '[') ++depth;
    if (ch == ')' || ch == ']') --depth;
    if (depth == 0 && (ch == ',' || ch == '}')) break;
    if (depth < 0) fail(name, "unbalanced brackets in header entry '" + key + "'");
  }
  if (end >= header.size()) fail(name, "header entry '" + key + "' is not terminated");
  std::string v = header.substr(pos, end - pos);
  while (!v.empty() && v.back() == ' ')
    v.pop_back();
  return v;
}

inline std::vector<int64_t> parse_shape(const std::string& text, const std::string& name) {
  if (text.size() < 2 || text.front() != '(' || text.back() != ')')
    fail(name, "shape '" + text + "' is not a tuple");
  std::vector<int64_t> shape;
  const std::string inner = text.substr(1, text.size() - 2);
  size_t i = 0;
  while (i < inner.size()) {
    while (i < inner.size() && (inner[i] == ' ' || inner[i] == ','))
      ++i;
    if (i >= inner.size()) break;
    size_t j = i;
    while (j < inner.size() && inner[j] >= '0' && inner[j] <= '9')
      ++j;
    if (j == i) fail(name, "shape '" + text + "' has a non-integer dimension");
    // At most 15 digits: every dimension below 10^15, so parsing cannot overflow.
    if (j - i > 15) fail(name, "shape '" + text + "' has a dimension too large to be real");
    shape.push_back(std::stoll(inner.substr(i, j - i)));
    i = j;
    while (i < inner.size() && inner[i] == ' ')
      ++i;
    if (i < inner.size() && inner[i] != ',') fail(name, "shape '" + text + "' is malformed");
  }
  return shape;
}

}  // namespace npy_detail

/// Parses the bytes of a .npy file; `name` is used in error messages.
inline NpyArray parse_npy(const std::string& bytes, const std::string& name = "<memory>") {
  using npy_detail::fail;
  static const char kMagic[] = "\x93NUMPY";
  if (bytes.size() < 10 || bytes.compare(0, 6, kMagic, 6) != 0)
    fail(name, "missing the \\x93NUMPY magic string (not an .npy file)");
  const auto major = static_cast<unsigned char>(bytes[6]);
  const auto minor = static_cast<unsigned char>(bytes[7]);
  size_t header_len = 0, offset = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) |
                 (static_cast<size_t>(static_cast<unsigned char>(bytes[9])) << 8);
    offset = 10;
  } else if (major == 2) {
    if (bytes.size() < 12) fail(name, "truncated version 2.0 header length");
    for (int i = 0; i < 4; ++i)
      header_len |= static_cast<size_t>(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
    offset = 12;
  } else {
    fail(name, "unsupported format version " + std::to_string(major) + "." + std::to_string(minor) +
                   " (only 1.0 and 2.0)");
  }
  if (minor != 0)
    fail(name, "unsupported format version " + std::to_string(major) + "." + std::to_string(minor) +
                   " (only 1.0 and 2.0)");
  if (bytes.size() < offset + header_len) fail(name, "truncated header");
  const std::string header = bytes.substr(offset, header_len);
  if (header.find('{') == std::string::npos || header.find('}') == std::string::npos)
    fail(name, "header is not a Python dict literal");

  NpyArray a;
  std::string descr = npy_detail::dict_value(header, "descr", name);
  if (descr.size() < 2 || (descr.front() != '\'' && descr.front() != '"'))
    fail(name, "descr " + descr + " is not a string");
  descr = descr.substr(1, descr.size() - 2);
  if (descr.size() == 3 && descr[0] == '>')
    fail(name, "big-endian dtype '" + descr + "' is not supported (only '<f4' and '<f8')");
  if (descr != "<f4" && descr != "<f8")
    fail(name, "unsupported dtype '" + descr + "' (only '<f4' and '<f8')");
  a.descr = descr;
  const std::string fortran = npy_detail::dict_value(header, "fortran_order", name);
  if (fortran == "True") fail(name, "Fortran-order arrays are not supported (only C order)");
  if (fortran != "False") fail(name, "fortran_order value '" + fortran + "' is not a boolean");
  a.shape = npy_detail::parse_shape(npy_detail::dict_value(header, "shape", name), name);
  for (int64_t s : a.shape)
    if (s < 0) fail(name, "negative dimension in shape");

  if (!npy_detail::host_is_little_endian()) fail(name, "big-endian hosts are not supported");
  const size_t elem = descr == "<f4" ? 4 : 8;
  const size_t data_off = offset + header_len;
  const size_t have = bytes.size() - data_off;
  // The element count, checked against the bytes present at each step so that it cannot wrap.
  size_t n = 1;
  for (int64_t s : a.shape)
    if (s == 0) n = 0;
  for (int64_t s : a.shape) {
    if (n == 0) break;
    if (n > have / elem / static_cast<size_t>(s))
      fail(name, "truncated data: the shape needs more than the " + std::to_string(have) +
                     " bytes present");
    n *= static_cast<size_t>(s);
  }
  if (have < n * elem)
    fail(name, "truncated data: expected " + std::to_string(n * elem) + " bytes, found " +
                   std::to_string(have));
  if (have > n * elem)
    fail(name, "trailing bytes after the data: expected " + std::to_string(n * elem) +
                   " bytes, found " + std::to_string(have));
  a.data.resize(n);
  const char* src = bytes.data() + data_off;
  for (size_t i = 0; i < n; ++i) {
    if (elem == 4) {
      float f;
      std::memcpy(&f, src + 4 * i, 4);
      a.data[i] = f;
    } else {
      std::memcpy(&a.data[i], src + 8 * i, 8);
    }
  }
  return a;
}

/// Reads and parses a .npy file; throws if it cannot be opened or is malformed.
inline NpyArray load_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("npy file '" + path + "': cannot open (missing test data?)");
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return parse_npy(bytes, path);
}

}  // namespace sparq::test
