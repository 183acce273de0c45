// A memory-mapped .safetensors file with its header validated before any tensor is read:
// 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}, then
// the data. Every offset is checked against the file size, so no read can go out of bounds.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config.hpp"

namespace llama {

enum class DType { kF32, kF16, kBF16, kOther };

inline int dtype_bytes(DType t) {
  return t == DType::kF32 ? 4 : 2;
}
inline const char* dtype_str(DType t) {
  return t == DType::kF32 ? "F32" : t == DType::kF16 ? "F16" : t == DType::kBF16 ? "BF16" : "?";
}

struct TensorInfo {
  std::string name;
  std::string dtype_name;  ///< as written in the header ("BF16", "I64", ...)
  DType dtype = DType::kOther;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  ///< inside the mapping
  int64_t bytes = 0;
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : shape)
      n *= s;
    return n;
  }
};

inline int64_t safetensors_element_size(const std::string& dt) {
  if (dt == "F64" || dt == "I64" || dt == "U64") return 8;
  if (dt == "F32" || dt == "I32" || dt == "U32") return 4;
  if (dt == "F16" || dt == "BF16" || dt == "I16" || dt == "U16") return 2;
  if (dt == "I8" || dt == "U8" || dt == "BOOL" || dt == "F8_E4M3" || dt == "F8_E5M2") return 1;
  return 0;
}

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path) : path_(path) {
    // A constructor that throws gets no destructor call: release the file and mapping here.
    try {
      open_and_parse();
    } catch (...) {
      release();
      throw;
    }
  }
  ~SafetensorsFile() { release(); }
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(const std::string& name) const {
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second;
  }

 private:
  void open_and_parse() {
    const std::string& path = path_;
    fd_ = ::open(path.c_str(), O_RDONLY);
    if (fd_ < 0) throw LoadError(path + ": cannot open file: " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0) fail("cannot stat file");
    size_ = static_cast<uint64_t>(st.st_size);
    if (size_ < 8) fail("truncated: " + std::to_string(size_) + " bytes, no header length");
    map_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
    if (map_ == MAP_FAILED) {
      map_ = nullptr;
      fail(std::string("mmap failed: ") + std::strerror(errno));
    }
    const auto* base = static_cast<const uint8_t*>(map_);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i)
      n = (n << 8) | base[i];  // little endian
    if (n > size_ - 8)
      fail("truncated or malformed header: header length " + std::to_string(n) +
           " exceeds the file size " + std::to_string(size_));
    nlohmann::json h;
    try {
      h = nlohmann::json::parse(base + 8, base + 8 + n);
    } catch (const std::exception& e) {
      fail(std::string("malformed header JSON: ") + e.what());
    }
    if (!h.is_object()) fail("malformed header: not a JSON object");
    const uint8_t* data = base + 8 + n;
    const uint64_t data_size = size_ - 8 - n;
    for (auto it = h.begin(); it != h.end(); ++it) {
      if (it.key() == "__metadata__") continue;
      const auto& e = it.value();
      auto bad = [&](const std::string& m) { fail("tensor \"" + it.key() + "\": " + m); };
      if (!e.is_object() || !e.contains("dtype") || !e["dtype"].is_string() ||
          !e.contains("shape") || !e["shape"].is_array() || !e.contains("data_offsets") ||
          !e["data_offsets"].is_array() || e["data_offsets"].size() != 2)
        bad("malformed header entry (needs dtype, shape, data_offsets[2])");
      TensorInfo t;
      t.name = it.key();
      t.dtype_name = e["dtype"].get<std::string>();
      t.dtype = t.dtype_name == "F32"    ? DType::kF32
                : t.dtype_name == "F16"  ? DType::kF16
                : t.dtype_name == "BF16" ? DType::kBF16
                                         : DType::kOther;
      const int64_t es = safetensors_element_size(t.dtype_name);
      if (es == 0) bad("unknown dtype \"" + t.dtype_name + "\"");
      int64_t numel = 1;
      for (const auto& s : e["shape"]) {
        if (!s.is_number_unsigned()) bad("shape entries must be non-negative integers");
        const uint64_t v = s.get<uint64_t>();
        if (v > (uint64_t(1) << 40) || (v > 0 && numel > (int64_t(1) << 50) / int64_t(v)))
          bad("shape too large");
        t.shape.push_back(static_cast<int64_t>(v));
        numel *= static_cast<int64_t>(v);
      }
      const auto& off = e["data_offsets"];
      if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned())
        bad("data_offsets must be non-negative integers");
      const uint64_t b = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
      if (b > end || end > data_size)
        bad("data_offsets [" + std::to_string(b) + ", " + std::to_string(end) +
            ") lie outside the data section (" + std::to_string(data_size) +
            " bytes): file truncated or header corrupt");
      if (static_cast<int64_t>(end - b) != numel * es)
        bad("data_offsets span " + std::to_string(end - b) + " bytes, shape and dtype need " +
            std::to_string(numel * es));
      t.data = data + b;
      t.bytes = static_cast<int64_t>(end - b);
      tensors_.emplace(t.name, std::move(t));
    }
  }
  void release() {
    if (map_) ::munmap(map_, size_);
    if (fd_ >= 0) ::close(fd_);
    map_ = nullptr;
    fd_ = -1;
  }
  [[noreturn]] void fail(const std::string& m) const { throw LoadError(path_ + ": " + m); }

  std::string path_;
  int fd_ = -1;
  void* map_ = nullptr;
  uint64_t size_ = 0;
  std::map<std::string, TensorInfo> tensors_;
};

}  // namespace llama
