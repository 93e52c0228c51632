"""vitbatch against timm itself, on the ViT variants timm builds.

Runs under the timm venv (scripts/timm_venv.sh): timm 1.0.31 on Debian's torch. For each
model name below, timm.create_model(name, pretrained=False) builds the architecture (fewer
blocks, and for the widest ones a smaller input, to keep the reference backend quick; the
option each name stands for is unchanged), its parameters are perturbed so that the
zero-initialised ones (layer-scale gammas, biases, tokens) matter, and the state dict is
written as safetensors with a config.json as timm's hub writes it. vitbatch must give timm's
logits (or, without a head, its pooled features) on the same input tensor, on reference and on
onednn fp32: max |diff| <= 1e-4 x max |output|.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest
import warnings

warnings.filterwarnings("ignore")

import numpy as np
import torch
import timm
import timm.layers
from safetensors.torch import save_file

BIN = os.environ.get("VITBATCH_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "build", "bin"))
DUMP = os.path.join(BIN, "vitbatch_dump")
VITBATCH = os.path.join(BIN, "vitbatch")

# (timm name, create_model overrides, what it exercises). "depth" keeps the run short;
# "img_size" shrinks only the widest models' token count (their heads and widths stay).
CASES = [
    ("vit_tiny_patch16_224", {}, "plain ViT, class token"),
    ("vit_small_patch32_224", {}, "patch 32"),
    ("vit_small_patch8_224", {"img_size": 112}, "patch 8, no head"),
    ("vit_huge_patch14_224", {"depth": 1, "img_size": 112}, "16 heads of 80, patch 14"),
    ("vit_base_patch16_plus_240", {"depth": 1}, "14 heads of 64, layer scale, input 240"),
    ("deit_tiny_patch16_224", {}, "DeiT"),
    ("deit_tiny_distilled_patch16_224", {}, "DeiT distillation token and head"),
    ("deit3_small_patch16_224", {}, "DeiT-III: no_embed_class, layer scale"),
    ("vit_small_patch14_dinov2", {"depth": 1, "img_size": 224}, "DINOv2: layer scale, no head"),
    ("vit_small_patch14_reg4_dinov2", {"depth": 1}, "DINOv2 with 4 registers, input 518"),
    ("vit_giant_patch14_dinov2", {"depth": 1, "img_size": 70}, "SwiGLUPacked MLP (silu)"),
    ("vit_base_patch16_clip_224", {"depth": 1}, "CLIP: norm_pre, no patch bias, eps 1e-5"),
    ("vit_base_patch32_clip_quickgelu_224", {"depth": 1}, "QuickGELU"),
    ("vit_base_patch16_siglip_224", {"depth": 1}, "SigLIP: attention pooling (map), no head"),
    ("vit_base_patch32_siglip_256", {"depth": 1}, "SigLIP map with gelu_tanh"),
    ("vit_base_patch16_siglip_gap_224", {"depth": 1}, "no class token, avg pooling"),
    ("vit_medium_patch16_gap_256", {}, "gap: no qkv bias, layer scale, avg + final norm"),
    ("vit_base_patch16_224_miil", {"depth": 1}, "no qkv bias"),
    ("flexivit_small", {}, "FlexiViT: no_embed_class, input 240"),
    ("vit_little_patch16_reg1_gap_256", {}, "register + avg + fc_norm, no final norm"),
    ("vit_wee_patch16_reg1_gap_256", {}, "register, fc_norm"),
    ("vit_so150m_patch16_reg4_map_256", {"depth": 1}, "4 registers, map pooling with a head"),
    ("beit3_base_patch16_224", {"depth": 1}, "BEiT-3 as timm builds it: attention and MLP norms"),
    ("beit_base_patch16_224", {"depth": 1}, "BEiT: relative position bias, q/v biases, gamma_1/2, mean pooling"),
    ("beitv2_base_patch16_224", {}, "BEiT v2, two blocks"),
    ("eva02_tiny_patch14_224", {}, "EVA-02: rotary embedding, q/v biases, SwiGLU packed"),
    ("eva02_small_patch14_336", {"depth": 1}, "EVA-02 at 336: rotary positions scaled to the 16x16 reference grid"),
    ("eva02_base_patch14_448", {"depth": 1, "img_size": 224}, "EVA-02: q/k/v projections apart, SwiGLU with norm"),
    ("eva02_base_patch16_clip_224", {"depth": 1}, "EVA-02 CLIP: attention norm, token pooling"),
    ("vit_medium_patch16_rope_reg1_gap_256", {}, "rotary embedding only (no absolute), register, avg"),
    ("eva_large_patch14_196", {"depth": 1}, "EVA (vision_transformer.py): fc_norm, avg"),
    ("test_vit2", {}, "timm's test model: register, layer scale, fc_norm"),
    ("test_vit3", {}, "timm's test model: map pooling over the prefix tokens too"),
    ("vit_small_patch16_224", {"qk_norm": True}, "qk-norm (LayerNorm on q and k)"),
    ("vit_small_patch16_224", {"global_pool": "avgmax"}, "avgmax pooling"),
    ("vit_small_patch16_224", {"global_pool": "max", "class_token": False}, "max pooling without class token"),
    ("vit_small_patch16_224", {"mlp_layer": "swiglu"}, "SwiGLU MLP (fc1_g, fc1_x), no architecture name"),
]


def build(name, overrides, seed):
    kwargs = dict(overrides)
    kwargs.setdefault("depth", 2)
    named = True
    if kwargs.get("mlp_layer") == "swiglu":
        # A custom model: timm's name no longer describes it, so config.json names none.
        kwargs["mlp_layer"] = timm.layers.SwiGLU
        kwargs["act_layer"] = torch.nn.SiLU
        named = False
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, **kwargs).eval()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if p.dim() <= 1:  # norms, biases, layer-scale gammas: all visibly away from 0 / 1
                p.add_(0.1 * torch.randn_like(p))
            elif p.std() < 1e-3:  # zero- or 1e-6-initialised tokens, latents, heads
                p.add_(0.02 * torch.randn_like(p))
    return model, named


def write_checkpoint(folder, name, model, named):
    os.makedirs(folder)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(folder, "model.safetensors"))
    cfg = dict(model.pretrained_cfg or {})
    config = {"num_classes": model.num_classes, "num_features": model.num_features,
              "global_pool": model.global_pool,
              "pretrained_cfg": {k: v for k, v in cfg.items() if k in ("interpolation", "mean", "std", "crop_pct",
                                                                       "crop_mode")}}
    size = model.patch_embed.img_size[0]  # the size built at, which overrides may have changed
    config["pretrained_cfg"]["input_size"] = [3, size, size]
    if named:
        config["architecture"] = name
    else:
        config["num_heads"] = model.blocks[0].attn.num_heads
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)


def vitbatch_output(folder, x, backend, image_size=None):
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = os.path.join(tmp, "in.f32"), os.path.join(tmp, "out.f32")
        x.numpy().astype(np.float32).tofile(inp)
        extra = ["fp32", str(image_size)] if image_size else []
        r = subprocess.run([DUMP, "logits", folder, inp, str(x.shape[0]), out, backend] + extra, capture_output=True,
                           text=True)
        if r.returncode != 0:
            raise AssertionError(f"vitbatch_dump failed on {folder} ({backend}): {r.stderr.strip()}")
        return np.fromfile(out, dtype=np.float32).reshape(x.shape[0], -1)


def write_hugging_face(folder, model, family, labels, seed):
    """model's weights under Hugging Face's names, with its config.json. Returns the random
    classifier (weight, bias) added for Dinov2ForImageClassification, else None."""
    os.makedirs(folder)
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    D, H = model.embed_dim, model.blocks[0].attn.num_heads
    prefix = {"vit": "vit.", "beit": "beit.", "dinov2": "", "dinov2-classifier": "dinov2."}[family]
    out = {}
    out[prefix + "embeddings.cls_token"] = sd.pop("cls_token")
    if "pos_embed" in sd:
        out[prefix + "embeddings.position_embeddings"] = sd.pop("pos_embed")
    for w in ("weight", "bias"):
        out[prefix + f"embeddings.patch_embeddings.projection.{w}"] = sd.pop(f"patch_embed.proj.{w}")
    for i in range(len(model.blocks)):
        b, l = f"blocks.{i}.", f"{prefix}encoder.layer.{i}."
        q, k, v = sd.pop(b + "attn.qkv.weight").chunk(3)
        for part, t in (("query", q), ("key", k), ("value", v)):
            out[l + f"attention.attention.{part}.weight"] = t
        if b + "attn.qkv.bias" in sd:
            for part, t in zip(("query", "key", "value"), sd.pop(b + "attn.qkv.bias").chunk(3)):
                out[l + f"attention.attention.{part}.bias"] = t
        if family == "beit":
            out[l + "attention.attention.query.bias"] = sd.pop(b + "attn.q_bias")
            out[l + "attention.attention.value.bias"] = sd.pop(b + "attn.v_bias")
            out[l + "attention.attention.relative_position_bias.relative_position_bias_table"] = \
                sd.pop(b + "attn.relative_position_bias_table")
        norm1, norm2 = ("layernorm_before", "layernorm_after") if family in ("vit", "beit") else ("norm1", "norm2")
        glu = family.startswith("dinov2") and b + "mlp.fc1.weight" in sd and \
            sd[b + "mlp.fc1.weight"].shape[0] == 2 * sd[b + "mlp.fc2.weight"].shape[1]
        for w in ("weight", "bias"):
            out[l + f"{norm1}.{w}"] = sd.pop(b + f"norm1.{w}")
            out[l + f"{norm2}.{w}"] = sd.pop(b + f"norm2.{w}")
            out[l + f"attention.output.dense.{w}"] = sd.pop(b + f"attn.proj.{w}")
            if family in ("vit", "beit"):
                out[l + f"intermediate.dense.{w}"] = sd.pop(b + f"mlp.fc1.{w}")
                out[l + f"output.dense.{w}"] = sd.pop(b + f"mlp.fc2.{w}")
            else:
                out[l + f"mlp.{'weights_in' if glu else 'fc1'}.{w}"] = sd.pop(b + f"mlp.fc1.{w}")
                out[l + f"mlp.{'weights_out' if glu else 'fc2'}.{w}"] = sd.pop(b + f"mlp.fc2.{w}")
        for j, hf in ((1, "lambda_1" if family == "beit" else "layer_scale1.lambda1"),
                      (2, "lambda_2" if family == "beit" else "layer_scale2.lambda1")):
            key = b + (f"gamma_{j}" if family == "beit" else f"ls{j}.gamma")
            if key in sd:
                out[l + hf] = sd.pop(key)
    for w in ("weight", "bias"):
        if f"norm.{w}" in sd:
            out[prefix + f"layernorm.{w}"] = sd.pop(f"norm.{w}")
        if f"fc_norm.{w}" in sd:
            out[f"beit.pooler.layernorm.{w}"] = sd.pop(f"fc_norm.{w}")
        if f"head.{w}" in sd:
            out[f"classifier.{w}"] = sd.pop(f"head.{w}")
    classifier = None
    if family == "dinov2-classifier":
        g = torch.Generator().manual_seed(seed)
        classifier = (0.02 * torch.randn(7, 2 * D, generator=g), 0.1 * torch.randn(7, generator=g))
        out["classifier.weight"], out["classifier.bias"] = classifier
    out[prefix + "embeddings.mask_token"] = torch.zeros(1, D)  # pretraining only: ignored
    assert not sd, f"unmapped: {sorted(sd)}"
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(folder, "model.safetensors"))
    config = {"model_type": family.split("-")[0], "hidden_size": D, "num_attention_heads": H,
              "layer_norm_eps": model.blocks[0].norm1.eps, "hidden_act": "gelu",
              "image_size": model.patch_embed.img_size[0], "patch_size": model.patch_embed.patch_size[0]}
    if family == "beit":
        config["use_mean_pooling"] = True
    if labels:
        config["id2label"] = {str(i): name for i, name in enumerate(labels)}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    return classifier


class TimmFamilies(unittest.TestCase):
    def test_same_outputs_as_timm(self):
        self.assertGreaterEqual(len({(n, tuple(sorted(o))) for n, o, _ in CASES}), 25)
        with tempfile.TemporaryDirectory() as tmp:
            for seed, (name, overrides, what) in enumerate(CASES):
                with self.subTest(model=name, overrides=str(overrides)):
                    started = time.time()
                    model, named = build(name, overrides, seed)
                    folder = os.path.join(tmp, f"{seed:02d}_{name}")
                    write_checkpoint(folder, name, model, named)
                    size = model.patch_embed.img_size[0]
                    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))
                    with torch.no_grad():
                        expected = model(x).numpy()
                    scale = float(np.abs(expected).max())
                    for backend in ("reference", "onednn"):
                        got = vitbatch_output(folder, x, backend)
                        self.assertEqual(got.shape, expected.shape, f"{name} on {backend}")
                        err = float(np.abs(got - expected).max())
                        self.assertLessEqual(err, 1e-4 * scale, f"{name} ({what}) on {backend}: max |diff| {err:.3g}, "
                                                                f"max |output| {scale:.3g}")
                    print(f"{name:40s} {str(overrides):45s} {what}: max |out| {scale:.3g}, "
                          f"{time.time() - started:.1f} s", file=sys.stderr, flush=True)

    def test_other_input_sizes_resample_the_position_embedding(self):
        # timm's way to run a checkpoint at another size: create the model at that size and
        # load the state dict through its checkpoint filter (resample_abs_pos_embed, bicubic,
        # antialiased, prefix rows kept). vitbatch --image-size must give the same outputs.
        from timm.models import eva, vision_transformer
        cases = [("vit_small_patch16_224", 384), ("vit_small_patch16_224", 160), ("deit3_small_patch16_224", 320),
                 ("vit_small_patch14_reg4_dinov2", 224), ("vit_base_patch16_siglip_224", 288),
                 ("eva02_tiny_patch14_224", 336)]
        with tempfile.TemporaryDirectory() as tmp:
            for seed, (name, size) in enumerate(cases):
                with self.subTest(model=name, size=size):
                    trained, named = build(name, {"depth": 1}, 100 + seed)
                    folder = os.path.join(tmp, f"{seed}_{name}")
                    write_checkpoint(folder, name, trained, named)
                    resized = timm.create_model(name, pretrained=False, depth=1, img_size=size).eval()
                    module = eva if name.startswith("eva") else vision_transformer
                    resized.load_state_dict(module.checkpoint_filter_fn(trained.state_dict(), resized))
                    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))
                    with torch.no_grad():
                        expected = resized(x).numpy()
                    scale = float(np.abs(expected).max())
                    for backend in ("reference", "onednn"):
                        got = vitbatch_output(folder, x, backend, image_size=size)
                        err = float(np.abs(got - expected).max())
                        self.assertLessEqual(err, 1e-4 * scale, f"{name} at {size} on {backend}: max |diff| {err:.3g}")
                    print(f"{name} trained at {trained.patch_embed.img_size[0]}, run at {size}: max |out| {scale:.3g}",
                          file=sys.stderr)

    def test_hugging_face_naming(self):
        # The same timm models under Hugging Face's tensor names and config.json (ViT, DINOv2
        # with and without SwiGLU, BEiT), as transformers' conversion scripts lay them out.
        cases = [("vit_tiny_patch16_224", {"num_classes": 10}, "vit"),
                 ("vit_small_patch14_dinov2", {"img_size": 98}, "dinov2"),
                 ("vit_small_patch14_dinov2", {"img_size": 98}, "dinov2-classifier"),
                 ("vit_giant_patch14_dinov2", {"depth": 1, "img_size": 42}, "dinov2"),
                 ("beit_base_patch16_224", {"depth": 1}, "beit")]
        with tempfile.TemporaryDirectory() as tmp:
            for seed, (name, overrides, family) in enumerate(cases):
                with self.subTest(model=name, family=family):
                    model, _ = build(name, overrides, 200 + seed)
                    folder = os.path.join(tmp, f"{seed}_{family}")
                    labels = [f"class number {i}" for i in range(10)] if family == "vit" else None
                    classifier = write_hugging_face(folder, model, family, labels, seed)
                    size = model.patch_embed.img_size[0]
                    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))
                    with torch.no_grad():
                        if classifier is None:
                            expected = model(x).numpy()
                        else:  # Dinov2ForImageClassification: [class token, patch mean] @ W^T + b
                            tokens = model.forward_features(x)
                            pooled = torch.cat([tokens[:, 0], tokens[:, 1:].mean(1)], dim=1)
                            expected = (pooled @ classifier[0].T + classifier[1]).numpy()
                    scale = float(np.abs(expected).max())
                    for backend in ("reference", "onednn"):
                        got = vitbatch_output(folder, x, backend)
                        err = float(np.abs(got - expected).max())
                        self.assertLessEqual(err, 1e-4 * scale, f"{family} {name} on {backend}: max |diff| {err:.3g}")
                    r = subprocess.run([VITBATCH, "info", "--model", folder], capture_output=True, text=True)
                    self.assertEqual(r.returncode, 0, r.stderr)
                    self.assertIn("huggingface names", r.stdout)
                    # config.json said everything about the network (no preprocessor_config.json
                    # here, so only the preprocessing is said to be defaulted)
                    defaulted = [line for line in r.stdout.splitlines() if line.startswith("default:")]
                    self.assertFalse([d for d in defaulted if any(w in d for w in ("eps", "pool", "activation", "heads"))],
                                     defaulted)
                    if labels:  # id2label names the classes of classify's output
                        photo = os.path.join(os.environ.get("VITBATCH_SHARED", ""), "images", "chelsea.png")
                        r = subprocess.run([VITBATCH, "classify", "--model", folder, "--image-size", str(size), photo],
                                           capture_output=True, text=True)
                        self.assertEqual(r.returncode, 0, r.stderr)
                        row = r.stdout.splitlines()[1].split(",")
                        self.assertEqual(row[2], labels[int(row[1])])

    def test_info_shows_the_variant(self):
        with tempfile.TemporaryDirectory() as tmp:
            model, named = build("vit_small_patch14_reg4_dinov2", {"depth": 1, "img_size": 56}, 0)
            folder = os.path.join(tmp, "dinov2")
            write_checkpoint(folder, "vit_small_patch14_reg4_dinov2", model, named)
            r = subprocess.run([VITBATCH, "info", "--model", folder, "--json"], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            v = json.loads(r.stdout)["variant"]
            self.assertEqual(v["register_tokens"], 4)
            self.assertEqual(v["prefix_tokens"], 5)
            self.assertFalse(v["pos_embed_covers_prefix"])
            self.assertTrue(v["layer_scale"])
            self.assertEqual(v["pooling"], "token")
            self.assertFalse(v["head"])
            self.assertEqual(v["output_width"], 384)
            # Other sizes: a multiple of the patch size, or timm's test_input_size when it has one.
            r = subprocess.run([VITBATCH, "info", "--model", folder, "--json", "--image-size", "70"], capture_output=True,
                               text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            j = json.loads(r.stdout)
            self.assertEqual(j["architecture"]["image_size"], 70)
            self.assertEqual(j["architecture"]["tokens"], 25 + 5)
            self.assertEqual(j["preprocess"]["input_size"], 70)
            r = subprocess.run([VITBATCH, "info", "--model", folder, "--image-size", "71"], capture_output=True, text=True)
            self.assertEqual(r.returncode, 2)
            self.assertIn("image size 71 must be a multiple of the patch size 14", r.stderr)
            r = subprocess.run([VITBATCH, "info", "--model", folder, "--image-size", "test"], capture_output=True, text=True)
            self.assertEqual(r.returncode, 2)
            self.assertIn("names a test_input_size", r.stderr)
            config_path = os.path.join(folder, "config.json")
            with open(config_path) as f:
                config = json.load(f)
            config["pretrained_cfg"]["test_input_size"] = [3, 84, 84]
            with open(config_path, "w") as f:
                json.dump(config, f)
            r = subprocess.run([VITBATCH, "info", "--model", folder, "--json", "--image-size", "test"], capture_output=True,
                               text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(json.loads(r.stdout)["architecture"]["image_size"], 84)
            # A processor that crops to another size than the position embedding's is not
            # followed silently: refused, and --image-size resamples the embedding to it.
            with open(os.path.join(folder, "preprocessor_config.json"), "w") as f:
                json.dump({"do_resize": True, "size": {"shortest_edge": 48}, "resample": 3, "do_center_crop": True,
                           "crop_size": {"height": 42, "width": 42}}, f)
            r = subprocess.run([VITBATCH, "info", "--model", folder], capture_output=True, text=True)
            self.assertEqual(r.returncode, 2)
            self.assertIn("the preprocessing (preprocessor_config.json) makes 42x42 images, but the position embedding is "
                          "for 56x56: pass --image-size 42", r.stderr)
            r = subprocess.run([VITBATCH, "info", "--model", folder, "--json", "--image-size", "42"], capture_output=True,
                               text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(json.loads(r.stdout)["preprocess"]["input_size"], 42)
            self.assertTrue(json.loads(r.stdout)["preprocess"]["huggingface_processor"])
            os.remove(os.path.join(folder, "preprocessor_config.json"))
            # No head: classify says so instead of inventing classes.
            r = subprocess.run([VITBATCH, "classify", "--model", folder, "/dev/null"], capture_output=True, text=True)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("the model has no classifier head", r.stderr)


if __name__ == "__main__":
    unittest.main()
