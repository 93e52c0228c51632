#include "vitbatch/safetensors.hpp"

#include "vitbatch/error.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <set>
#include <vector>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace vitbatch {
namespace {

// A read-only mapping of a whole file, unmapped when the last reference goes.
struct Mapping {
  void* address = MAP_FAILED;
  size_t size = 0;
  ~Mapping() {
    if (address != MAP_FAILED) munmap(address, size);
  }
};

size_t dtype_bytes(const std::string& dtype) {
  static const std::map<std::string, size_t> sizes = {
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4},
      {"I16", 2}, {"I8", 1},  {"U8", 1},  {"BOOL", 1}, {"U16", 2}, {"U32", 4}, {"U64", 8}};
  auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

float half_to_float(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while (!(mant & 0x400)) { mant <<= 1; --exp; }
      bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace

namespace {

// What a file that is not safetensors seems to be, for the error message.
std::string describe_content(const uint8_t* b, size_t n) {
  auto starts = [&](const char* magic, size_t len) { return n >= len && std::memcmp(b, magic, len) == 0; };
  if (n == 0) return "the file is empty";
  if (n < 9) return "only " + std::to_string(n) + " bytes";
  if (starts("PK\x03\x04", 4)) return "a zip archive: a PyTorch .pt/.pth checkpoint? convert it to safetensors";
  if (b[0] == 0x80 && b[1] <= 5) return "a Python pickle: a PyTorch checkpoint? convert it to safetensors";
  if (b[0] == '{' || b[0] == '[') return "it is JSON text, not weights";
  if (starts("\x89PNG", 4) || starts("\xff\xd8\xff", 3)) return "it is an image";
  if (starts("\x89HDF", 4)) return "an HDF5 file (Keras?)";
  if (starts("GGUF", 4)) return "a GGUF file";
  return "no safetensors header at its start";
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);  // a FIFO must not block
  if (fd < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path + ": not a regular file (a directory, FIFO, device or socket)");
  }
  auto mapping = std::make_shared<Mapping>();
  mapping->size = static_cast<size_t>(st.st_size);
  if (mapping->size > 0)
    mapping->address = mmap(nullptr, mapping->size, PROT_READ, MAP_PRIVATE, fd, 0);
  int err = errno;
  ::close(fd);
  if (mapping->size > 0 && mapping->address == MAP_FAILED)
    throw Error(path + ": cannot mmap: " + std::strerror(err));
  const uint8_t* bytes = mapping->size ? static_cast<const uint8_t*>(mapping->address) : nullptr;
  return parse(mapping, bytes, mapping->size, path);
}

SafetensorsFile SafetensorsFile::parse(std::shared_ptr<const void> owner, const uint8_t* bytes,
                                       size_t size, const std::string& label) {
  auto fail = [&](const std::string& why) -> Error { return Error(label + ": " + why); };
  // A safetensors file is an 8-byte little-endian header length, then a JSON object: its
  // first byte is '{'. Anything else gets named instead of a meaningless header length.
  if (size < 9 || bytes[8] != '{') throw fail("not a safetensors file (" + describe_content(bytes, size) + ")");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > size - 8)
    throw fail("header length " + std::to_string(header_len) + " runs past the end of the file (" +
               std::to_string(size) + " bytes): truncated or not safetensors");
  nlohmann::json header;
  // JSON lets a key repeat (the last wins): in a tensor table that hides a second tensor of
  // the same name, so the parser's callback refuses it.
  std::vector<std::set<std::string>> keys_at_depth;
  std::string duplicate;
  auto refuse_duplicates = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (event == E::object_start) keys_at_depth.emplace_back();
    if (event == E::object_end && !keys_at_depth.empty()) keys_at_depth.pop_back();
    if (event == E::key && !keys_at_depth.empty() && !keys_at_depth.back().insert(parsed.get<std::string>()).second &&
        duplicate.empty())
      duplicate = (depth == 1 ? "tensor '" : "key '") + parsed.get<std::string>() + "'";
    return true;
  };
  try {
    header = nlohmann::json::parse(bytes + 8, bytes + 8 + header_len, refuse_duplicates);
  } catch (const nlohmann::json::exception& e) {
    throw fail(std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) throw fail("header names " + duplicate + " twice");
  if (!header.is_object()) throw fail("header is not a JSON object");

  SafetensorsFile file;
  file.owner_ = std::move(owner);
  file.base_ = bytes;
  file.bytes_ = size;
  file.label_ = label;
  const uint8_t* data = bytes + 8 + header_len;
  size_t data_size = size - 8 - header_len;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (it->is_object())
        for (auto m = it->begin(); m != it->end(); ++m)
          if (m->is_string()) file.metadata_[m.key()] = m->get<std::string>();
      continue;
    }
    const std::string& name = it.key();
    const nlohmann::json& entry = *it;
    auto bad = [&](const std::string& why) { return fail("tensor '" + name + "': " + why); };
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
        !entry.contains("data_offsets"))
      throw bad("entry needs dtype, shape and data_offsets");
    TensorView t;
    t.name = name;
    if (!entry["dtype"].is_string()) throw bad("dtype is not a string");
    t.dtype = entry["dtype"].get<std::string>();
    size_t esize = dtype_bytes(t.dtype);
    if (esize == 0) throw bad("unknown dtype '" + t.dtype + "'");
    const auto& shape = entry["shape"];
    const auto& offsets = entry["data_offsets"];
    if (!shape.is_array()) throw bad("shape is not an array");
    uint64_t count = 1;
    for (const auto& d : shape) {
      if (!d.is_number_unsigned()) throw bad("shape holds a non-integer or negative dim");
      uint64_t dim = d.get<uint64_t>();
      if (dim != 0 && count > (uint64_t{1} << 40) / dim) throw bad("shape is absurdly large");
      count *= dim;
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned())
      throw bad("data_offsets must be two non-negative integers");
    uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    if (begin > end || end > data_size)
      throw bad("data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                ") out of range of the " + std::to_string(data_size) + "-byte data section");
    if (end - begin != count * esize)
      throw bad("shape " + shape_string(t.shape) + " of " + t.dtype + " needs " +
                std::to_string(count * esize) + " bytes, data_offsets give " + std::to_string(end - begin));
    t.data = data + begin;
    t.nbytes = end - begin;
    file.tensors_.emplace(name, std::move(t));
  }
  // Two tensors sharing bytes would alias each other's weights.
  std::vector<const TensorView*> by_offset;
  for (const auto& [name, t] : file.tensors_)
    if (t.nbytes > 0) by_offset.push_back(&t);  // an empty tensor owns no bytes
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorView* a, const TensorView* b) { return a->data < b->data; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i]->data < by_offset[i - 1]->data + by_offset[i - 1]->nbytes)
      throw fail("tensors '" + by_offset[i - 1]->name + "' and '" + by_offset[i]->name + "' overlap in the data section");
  return file;
}

void convert_to_f32(const TensorView& t, float* out) {
  size_t n = static_cast<size_t>(element_count(t.shape));
  if (t.dtype == "F32") {
    std::memcpy(out, t.data, n * 4);
  } else if (t.dtype == "F16" || t.dtype == "BF16") {
    bool bf16 = t.dtype == "BF16";
    for (size_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, t.data + 2 * i, 2);
      if (bf16) {
        uint32_t bits = uint32_t{h} << 16;
        std::memcpy(out + i, &bits, 4);
      } else {
        out[i] = half_to_float(h);
      }
    }
  } else {
    throw Error("tensor '" + t.name + "' has dtype " + t.dtype + "; weights must be F32, F16 or BF16");
  }
}

}  // namespace vitbatch
