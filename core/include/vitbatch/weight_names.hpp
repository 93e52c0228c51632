// weight_names.hpp: maps checkpoint tensor names onto vitbatch's canonical names, which are
// timm's (patch_embed.proj.weight, blocks.N.attn.qkv.weight, ...). Hugging Face ViT/DeiT
// checkpoints keep query/key/value apart; they map to blocks.N.attn.{q,k,v}.* and the loader
// packs them into qkv.
#pragma once

#include <optional>
#include <string>

namespace vitbatch {

enum class NameStyle { Timm, HuggingFace };

struct CanonicalName {
  std::string name;
  NameStyle style;
};

// The canonical name of a checkpoint tensor, or nothing if it is not a ViT/DeiT weight we know.
std::optional<CanonicalName> canonical_weight_name(const std::string& checkpoint_name);

// The family a tensor name belongs to when vitbatch does not run that family ("BEiT", "EVA",
// ...), for the error message; empty when it cannot tell.
std::string foreign_family(const std::string& checkpoint_name);

// Tensors that checkpoints carry but inference never reads (HF's pooler, position ids).
bool is_ignored_weight_name(const std::string& checkpoint_name);

}  // namespace vitbatch
