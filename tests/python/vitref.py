"""Independent reference for vitbatch's parity tests: safetensors I/O with numpy, timm's eval
preprocessing with torchvision + Pillow, and a ViT / DeiT written with torch.nn modules
(Conv2d, LayerNorm, MultiheadAttention, Linear, GELU). Nothing here uses vitbatch's code."""

import json
import math
import os
import struct
import subprocess

import numpy as np
import torch
from torch import nn
from PIL import Image
from torchvision import transforms

torch.set_num_threads(2)

SHARED = os.environ.get("VITBATCH_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared"))
BIN = os.environ.get("VITBATCH_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "build", "bin"))
MODEL_DIR = os.path.join(SHARED, "models", "vit_tiny_patch16_224.augreg_in21k_ft_in1k")
IMAGES_DIR = os.path.join(SHARED, "images")
VITBATCH = os.path.join(BIN, "vitbatch")
TEST_PLUGIN_DIR = os.environ.get("VITBATCH_TEST_PLUGIN_DIR", os.path.join(BIN, "..", "test_plugins"))
DUMP = os.path.join(BIN, "vitbatch_dump")

_DTYPES = {"F32": np.float32, "F16": np.float16}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        b, e = entry["data_offsets"]
        raw = body[b:e]
        if entry["dtype"] == "BF16":
            u16 = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
            arr = u16.view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=_DTYPES[entry["dtype"]]).astype(np.float32)
        out[name] = arr.reshape(entry["shape"])
    return out


def write_safetensors(path, tensors, dtype="F32"):
    """Writes float tensors as F32, F16 or BF16 (BF16 by truncation)."""
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if dtype == "F16":
            raw = arr.astype(np.float16).tobytes()
        elif dtype == "BF16":
            raw = (arr.view(np.uint32) >> 16).astype(np.uint16).tobytes()
        else:
            raw = arr.tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def rounded_through(tensors, dtype):
    """The values a checkpoint of `dtype` really holds, as float32 (for the torch twin)."""
    if dtype == "F16":
        return {k: v.astype(np.float16).astype(np.float32) for k, v in tensors.items()}
    if dtype == "BF16":
        return {k: ((v.astype(np.float32).view(np.uint32) >> 16) << 16).view(np.float32) for k, v in tensors.items()}
    return tensors


def eval_transform(input_size=224, crop_pct=0.875, interpolation="bicubic", mean=(0.485, 0.456, 0.406),
                   std=(0.229, 0.224, 0.225)):
    """timm's transforms_imagenet_eval (crop_mode center), on torchvision."""
    interp = {"bicubic": transforms.InterpolationMode.BICUBIC,
              "bilinear": transforms.InterpolationMode.BILINEAR}[interpolation]
    scale = math.floor(input_size / crop_pct)
    crop = transforms.Compose([transforms.Resize(scale, interpolation=interp), transforms.CenterCrop(input_size)])
    tensor = transforms.Compose([transforms.ToTensor(), transforms.Normalize(torch.tensor(mean), torch.tensor(std))])
    return crop, tensor


def model_eval_transform(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)["pretrained_cfg"]
    return eval_transform(cfg["input_size"][2], cfg["crop_pct"], cfg["interpolation"], cfg["mean"], cfg["std"])


def photos():
    return sorted(os.path.join(IMAGES_DIR, f) for f in os.listdir(IMAGES_DIR)
                  if f.lower().endswith((".jpg", ".jpeg", ".png")) and f != "truncated.jpg")


class Block(nn.Module):
    def __init__(self, dim, heads, mlp, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.fc1 = nn.Linear(dim, mlp)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(mlp, dim)

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class TorchViT(nn.Module):
    """ViT / DeiT-distilled as timm defines it, from torch.nn parts."""

    def __init__(self, image=224, patch=16, chans=3, dim=192, depth=12, heads=3, mlp=768, classes=1000,
                 distilled=False, eps=1e-6):
        super().__init__()
        self.distilled = distilled
        self.patch_embed = nn.Conv2d(chans, dim, patch, stride=patch)
        tokens = (image // patch) ** 2 + (2 if distilled else 1)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim)) if distilled else None
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp, eps) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.head = nn.Linear(dim, classes)
        self.head_dist = nn.Linear(dim, classes) if distilled else None

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        prefix = [self.cls_token.expand(x.shape[0], -1, -1)]
        if self.distilled:
            prefix.append(self.dist_token.expand(x.shape[0], -1, -1))
        x = torch.cat(prefix + [x], dim=1) + self.pos_embed
        for b in self.blocks:
            x = b(x)
        x = self.norm(x)
        if self.distilled:
            return (self.head(x[:, 0]) + self.head_dist(x[:, 1])) / 2
        return self.head(x[:, 0])

    def load_timm(self, sd):
        """Maps timm tensor names onto these modules."""
        t = lambda a: torch.from_numpy(np.array(a, dtype=np.float32))
        with torch.no_grad():
            self.patch_embed.weight.copy_(t(sd["patch_embed.proj.weight"]))
            self.patch_embed.bias.copy_(t(sd["patch_embed.proj.bias"]))
            self.cls_token.copy_(t(sd["cls_token"]))
            if self.distilled:
                self.dist_token.copy_(t(sd["dist_token"]))
                self.head_dist.weight.copy_(t(sd["head_dist.weight"]))
                self.head_dist.bias.copy_(t(sd["head_dist.bias"]))
            self.pos_embed.copy_(t(sd["pos_embed"]))
            for i, b in enumerate(self.blocks):
                p = f"blocks.{i}."
                b.norm1.weight.copy_(t(sd[p + "norm1.weight"])); b.norm1.bias.copy_(t(sd[p + "norm1.bias"]))
                b.norm2.weight.copy_(t(sd[p + "norm2.weight"])); b.norm2.bias.copy_(t(sd[p + "norm2.bias"]))
                b.attn.in_proj_weight.copy_(t(sd[p + "attn.qkv.weight"]))
                b.attn.in_proj_bias.copy_(t(sd[p + "attn.qkv.bias"]))
                b.attn.out_proj.weight.copy_(t(sd[p + "attn.proj.weight"]))
                b.attn.out_proj.bias.copy_(t(sd[p + "attn.proj.bias"]))
                b.fc1.weight.copy_(t(sd[p + "mlp.fc1.weight"])); b.fc1.bias.copy_(t(sd[p + "mlp.fc1.bias"]))
                b.fc2.weight.copy_(t(sd[p + "mlp.fc2.weight"])); b.fc2.bias.copy_(t(sd[p + "mlp.fc2.bias"]))
            self.norm.weight.copy_(t(sd["norm.weight"])); self.norm.bias.copy_(t(sd["norm.bias"]))
            self.head.weight.copy_(t(sd["head.weight"])); self.head.bias.copy_(t(sd["head.bias"]))
        return self.eval()


def timm_to_hf(sd, prefix="vit", distilled=False):
    """Renames a timm state dict to Hugging Face ViT/DeiT names (q, k, v split)."""
    out = {}
    e = f"{prefix}.embeddings."
    out[e + "cls_token"] = sd["cls_token"]
    out[e + "position_embeddings"] = sd["pos_embed"]
    out[e + "patch_embeddings.projection.weight"] = sd["patch_embed.proj.weight"]
    out[e + "patch_embeddings.projection.bias"] = sd["patch_embed.proj.bias"]
    if distilled:
        out[e + "distillation_token"] = sd["dist_token"]
    i = 0
    while f"blocks.{i}.norm1.weight" in sd:
        s, d = f"blocks.{i}.", f"{prefix}.encoder.layer.{i}."
        for w in ("weight", "bias"):
            out[d + "layernorm_before." + w] = sd[s + "norm1." + w]
            out[d + "layernorm_after." + w] = sd[s + "norm2." + w]
            q, k, v = np.split(sd[s + "attn.qkv." + w], 3, axis=0)
            out[d + "attention.attention.query." + w] = q
            out[d + "attention.attention.key." + w] = k
            out[d + "attention.attention.value." + w] = v
            out[d + "attention.output.dense." + w] = sd[s + "attn.proj." + w]
            out[d + "intermediate.dense." + w] = sd[s + "mlp.fc1." + w]
            out[d + "output.dense." + w] = sd[s + "mlp.fc2." + w]
        i += 1
    for w in ("weight", "bias"):
        out[f"{prefix}.layernorm.{w}"] = sd["norm." + w]
        if distilled:
            out["cls_classifier." + w] = sd["head." + w]
            out["distillation_classifier." + w] = sd["head_dist." + w]
        else:
            out["classifier." + w] = sd["head." + w]
    return out


def random_timm_state(seed, image=32, patch=8, dim=48, depth=2, mlp=96, classes=10, distilled=False):
    """A synthetic timm checkpoint with weights of realistic scale."""
    g = np.random.default_rng(seed)
    tokens = (image // patch) ** 2 + (2 if distilled else 1)
    r = lambda *s, scale=0.2: (g.standard_normal(s) * scale).astype(np.float32)
    sd = {"patch_embed.proj.weight": r(dim, 3, patch, patch, scale=0.05), "patch_embed.proj.bias": r(dim),
          "cls_token": r(1, 1, dim), "pos_embed": r(1, tokens, dim),
          "norm.weight": 1 + r(dim), "norm.bias": r(dim), "head.weight": r(classes, dim), "head.bias": r(classes)}
    if distilled:
        sd.update({"dist_token": r(1, 1, dim), "head_dist.weight": r(classes, dim), "head_dist.bias": r(classes)})
    for i in range(depth):
        p = f"blocks.{i}."
        sd.update({p + "norm1.weight": 1 + r(dim), p + "norm1.bias": r(dim), p + "norm2.weight": 1 + r(dim),
                   p + "norm2.bias": r(dim), p + "attn.qkv.weight": r(3 * dim, dim), p + "attn.qkv.bias": r(3 * dim),
                   p + "attn.proj.weight": r(dim, dim), p + "attn.proj.bias": r(dim),
                   p + "mlp.fc1.weight": r(mlp, dim), p + "mlp.fc1.bias": r(mlp),
                   p + "mlp.fc2.weight": r(dim, mlp), p + "mlp.fc2.bias": r(dim)})
    return sd


def torch_logits_on_photos():
    """The real ViT-Ti on every shared photo, by the independent torch.nn ViT: (paths, the
    input tensor [N,3,S,S] fed to it, its logits as a NumPy array)."""
    sd = read_safetensors(os.path.join(MODEL_DIR, "model.safetensors"))
    model = TorchViT().load_timm(sd)
    crop, to_tensor = model_eval_transform(MODEL_DIR)
    paths = photos()
    x = torch.stack([to_tensor(crop(Image.open(p).convert("RGB"))) for p in paths])
    with torch.no_grad():
        expected = model(x).numpy()
    return paths, x, expected


def vitbatch_logits(model_path, inputs, workdir, backend=None, precision=None):
    """Runs vitbatch's executor on exactly these input tensors [N,3,S,S]."""
    src = os.path.join(workdir, "inputs.f32")
    dst = os.path.join(workdir, "logits.f32")
    np.ascontiguousarray(inputs, dtype=np.float32).tofile(src)
    cmd = [DUMP, "logits", model_path, src, str(inputs.shape[0]), dst] + ([backend or "reference"] if backend or precision else []) + ([precision] if precision else [])
    subprocess.run(cmd, check=True)
    return np.fromfile(dst, dtype=np.float32).reshape(inputs.shape[0], -1)
