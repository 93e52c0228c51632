// A model directory's config.json, read by load_model beside a small valid checkpoint (so
// every setting it gives reaches the checks that follow it). Bytes after the input's first
// NUL, if it has one, become a Hugging Face preprocessor_config.json beside it.
#include "vitbatch/error.hpp"
#include "vitbatch/model.hpp"

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace {
std::string g_dir;

void write(const std::string& path, const void* data, size_t size) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
}

// A timm ViT with dim 8, depth 1, patch 8 on 16x16 images, 2 classes, all weights 0.01.
void write_checkpoint(const std::string& path) {
  const int D = 8, H = 16, T = 5, C = 2;
  std::vector<std::pair<std::string, std::vector<int>>> tensors = {
      {"patch_embed.proj.weight", {D, 3, 8, 8}}, {"patch_embed.proj.bias", {D}}, {"cls_token", {1, 1, D}},
      {"pos_embed", {1, T, D}}, {"norm.weight", {D}}, {"norm.bias", {D}}, {"head.weight", {C, D}}, {"head.bias", {C}},
      {"blocks.0.norm1.weight", {D}}, {"blocks.0.norm1.bias", {D}}, {"blocks.0.norm2.weight", {D}},
      {"blocks.0.norm2.bias", {D}}, {"blocks.0.attn.qkv.weight", {3 * D, D}}, {"blocks.0.attn.qkv.bias", {3 * D}},
      {"blocks.0.attn.proj.weight", {D, D}}, {"blocks.0.attn.proj.bias", {D}}, {"blocks.0.mlp.fc1.weight", {H, D}},
      {"blocks.0.mlp.fc1.bias", {H}}, {"blocks.0.mlp.fc2.weight", {D, H}}, {"blocks.0.mlp.fc2.bias", {D}}};
  std::string header = "{";
  size_t offset = 0;
  for (const auto& [name, shape] : tensors) {
    size_t n = 1;
    std::string dims;
    for (int d : shape) n *= d, dims += (dims.empty() ? "" : ",") + std::to_string(d);
    header += (header.size() > 1 ? "," : "") + std::string("\"") + name + "\":{\"dtype\":\"F32\",\"shape\":[" + dims +
              "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + 4 * n) + "]}";
    offset += 4 * n;
  }
  header += "}";
  header += std::string((8 - header.size() % 8) % 8, ' ');
  std::vector<uint8_t> bytes(8 + header.size() + offset);
  uint64_t len = header.size();
  std::memcpy(bytes.data(), &len, 8);
  std::memcpy(bytes.data() + 8, header.data(), header.size());
  std::vector<float> values(offset / 4, 0.01f);
  std::memcpy(bytes.data() + 8 + header.size(), values.data(), offset);
  write(path, bytes.data(), bytes.size());
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  char pattern[] = "/tmp/vitbatch-fuzz-config.XXXXXX";
  g_dir = mkdtemp(pattern);
  write_checkpoint(g_dir + "/model.safetensors");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const uint8_t* nul = static_cast<const uint8_t*>(std::memchr(data, 0, size));
  const size_t config_size = nul ? static_cast<size_t>(nul - data) : size;
  write(g_dir + "/config.json", data, config_size);
  if (nul) write(g_dir + "/preprocessor_config.json", nul + 1, size - config_size - 1);
  else unlink((g_dir + "/preprocessor_config.json").c_str());
  try {
    vitbatch::load_model(g_dir);
  } catch (const vitbatch::Error&) {
  }
  return 0;
}
