// test_support.hpp: builders shared by the unit tests: in-memory safetensors files, synthetic
// ViT checkpoints on disk, and temporary directories.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <cmath>
#include <cstring>
#include <functional>
#include <stdlib.h>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace test_support {

struct RawTensor {
  std::string dtype = "F32";
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

inline RawTensor f32_tensor(std::vector<int64_t> shape, float fill = 0.5f) {
  RawTensor t;
  t.shape = shape;
  size_t n = 1;
  for (int64_t d : shape) n *= static_cast<size_t>(d);
  std::vector<float> v(n, fill);
  t.bytes.resize(n * 4);
  std::memcpy(t.bytes.data(), v.data(), n * 4);
  return t;
}

// The same tensors with varied values (a fixed pattern per tensor, scale ~0.3): a model whose
// weights are all equal answers the same whatever its input, which hides wrong data flow.
inline std::map<std::string, RawTensor> varied(std::map<std::string, RawTensor> tensors) {
  int salt = 0;
  for (auto& [name, t] : tensors) {
    ++salt;
    size_t n = t.bytes.size() / 4;
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = 0.3f * std::sin(0.7f * static_cast<float>(i) + 1.3f * static_cast<float>(salt));
    std::memcpy(t.bytes.data(), v.data(), n * 4);
  }
  return tensors;
}

// The same tensors with pseudo-random values (normal, standard deviation `scale`): varied()'s
// smooth patterns make every weight matrix of rank two, and a model whose answers then hardly
// depend on its input.
inline std::map<std::string, RawTensor> random_values(std::map<std::string, RawTensor> tensors, float scale, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  for (auto& [name, t] : tensors) {
    std::vector<float> v(t.bytes.size() / 4);
    for (float& x : v) x = normal(rng);
    std::memcpy(t.bytes.data(), v.data(), v.size() * 4);
  }
  return tensors;
}

// Serialises tensors as safetensors; `mutate_header` may corrupt the header on purpose.
inline std::vector<uint8_t> safetensors_bytes(const std::map<std::string, RawTensor>& tensors,
                                              const std::function<void(nlohmann::json&)>& mutate_header = {}) {
  nlohmann::json header = nlohmann::json::object();
  std::vector<uint8_t> data;
  for (const auto& [name, t] : tensors) {
    header[name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data.insert(data.end(), t.bytes.begin(), t.bytes.end());
  }
  if (mutate_header) mutate_header(header);
  std::string h = header.dump();
  std::vector<uint8_t> out(8 + h.size() + data.size());
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(n >> (8 * i));
  std::memcpy(out.data() + 8, h.data(), h.size());
  if (!data.empty()) std::memcpy(out.data() + 8 + h.size(), data.data(), data.size());
  return out;
}

// A tiny timm-named ViT: patch 4 on 8x8 images, dim D (8), `depth` blocks, mlp 2D, 5 classes.
inline std::map<std::string, RawTensor> tiny_vit(int depth = 1, int64_t D = 8) {
  const int64_t H = 2 * D;
  std::map<std::string, RawTensor> t = {
      {"patch_embed.proj.weight", f32_tensor({D, 3, 4, 4}, 0.01f)},
      {"patch_embed.proj.bias", f32_tensor({D})},
      {"cls_token", f32_tensor({1, 1, D})},
      {"pos_embed", f32_tensor({1, 5, D})},
      {"norm.weight", f32_tensor({D}, 1.0f)},
      {"norm.bias", f32_tensor({D}, 0.0f)},
      {"head.weight", f32_tensor({5, D}, 0.1f)},
      {"head.bias", f32_tensor({5}, 0.0f)}};
  for (int i = 0; i < depth; ++i) {
    std::string b = "blocks." + std::to_string(i) + ".";
    t[b + "norm1.weight"] = f32_tensor({D}, 1.0f);
    t[b + "norm1.bias"] = f32_tensor({D}, 0.0f);
    t[b + "norm2.weight"] = f32_tensor({D}, 1.0f);
    t[b + "norm2.bias"] = f32_tensor({D}, 0.0f);
    t[b + "attn.qkv.weight"] = f32_tensor({3 * D, D}, 0.02f);
    t[b + "attn.qkv.bias"] = f32_tensor({3 * D}, 0.0f);
    t[b + "attn.proj.weight"] = f32_tensor({D, D}, 0.02f);
    t[b + "attn.proj.bias"] = f32_tensor({D}, 0.0f);
    t[b + "mlp.fc1.weight"] = f32_tensor({H, D}, 0.02f);
    t[b + "mlp.fc1.bias"] = f32_tensor({H}, 0.0f);
    t[b + "mlp.fc2.weight"] = f32_tensor({D, H}, 0.02f);
    t[b + "mlp.fc2.bias"] = f32_tensor({D}, 0.0f);
  }
  return t;
}

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "vitbatch-test-XXXXXX").string();
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    path_ = mkdtemp(buf.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }
  std::string write(const std::string& name, const std::vector<uint8_t>& bytes) const {
    std::string p = file(name);
    std::filesystem::create_directories(std::filesystem::path(p).parent_path());
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return p;
  }
  std::string write(const std::string& name, const std::string& text) const {
    return write(name, std::vector<uint8_t>(text.begin(), text.end()));
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace test_support
