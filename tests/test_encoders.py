"""Pretrained encoders load offline from their pip packages and are deterministic."""

from __future__ import annotations

import pytest
import torch

from robot_si.policies.encoders import ImageEncoder, shared_text_encoder


def test_image_encoder_pretrained_offline_and_deterministic():
    encoder = ImageEncoder(64)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        first, second = encoder(images), encoder(images)
    assert first.shape == (2, 1280) and encoder.output_dim == 1280
    assert torch.equal(first, second) and torch.isfinite(first).all()
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.backbone.training  # frozen BatchNorm statistics stay ImageNet's
    grid = ImageEncoder(64, pooling="grid")
    assert grid(images).shape == (2, 1280 * 2 * 2)
    multiscale = ImageEncoder(64, pooling="multiscale")  # 40x8x8 (stride 8) + 112x4x4 (stride 16) + pooled 1280
    assert multiscale(images).shape == (2, 40 * 64 + 112 * 16 + 1280) == (2, multiscale.output_dim)
    assert torch.allclose(multiscale(images)[:, -1280:], first, atol=1e-5)
    # ImageNet weights differ from a random init
    assert not torch.allclose(ImageEncoder(64, pretrained=False).backbone._conv_stem.weight, encoder.backbone._conv_stem.weight)


def test_image_encoder_errors_and_partial_unfreeze():
    encoder = ImageEncoder(64, pretrained=False, freeze=True, trainable_blocks=1)
    assert any(p.requires_grad for p in encoder.backbone._blocks[-1].parameters())
    assert not any(p.requires_grad for p in encoder.backbone._blocks[0].parameters())
    with pytest.raises(ValueError, match="built for 64x64 images, got 32x32"):
        encoder(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="uint8"):
        encoder(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def test_text_encoder_caches_and_refuses_empty():
    encoder = shared_text_encoder()
    a = encoder(["reach the red cube", "open the drawer", "reach the red cube"])
    assert a.shape == (3, 384) and torch.equal(a[0], a[2])
    assert torch.allclose(a.norm(dim=1), torch.ones(3), atol=1e-5)
    similar = encoder(["reach for the red cube"])[0]
    assert float(similar @ a[0]) > float(similar @ a[1])  # a real sentence embedding, not a hash
    assert {"reach the red cube", "open the drawer"} <= set(encoder._cache)
    with pytest.raises(ValueError, match="cannot embed instruction ''"):
        encoder([""])
    with pytest.raises(ValueError, match="list of instructions"):
        encoder("reach")
