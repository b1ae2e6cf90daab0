"""Issue 3.2: timm backbones. timm is an optional extra for users; the test extra installs it."""

from __future__ import annotations

import pytest
import timm
import torch

from linprobe.features.backbones import UnknownBackboneError, WeightsUnavailableError, load_backbone

from ._backbone_helpers import assert_reproduces_logits

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name", ["resnet18", "vit_tiny_patch16_224", "mobilenetv3_small_050"])
def test_timm_prelogits_reproduce_logits(name):
    torch.manual_seed(0)
    b = load_backbone(f"timm:{name}:none", image_size=32)
    torch.manual_seed(0)
    kwargs = {"img_size": 32} if name.startswith("vit") else {}
    ref = timm.create_model(name, pretrained=False, **kwargs).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        emb, logits = b.model(x), ref(x)
    assert emb.shape == (2, b.embed_dim) and b.spec == f"timm:{name}:none"
    assert_reproduces_logits(emb, ref.get_classifier(), b.head, logits)  # timm's own head
    cfg = timm.data.resolve_data_config({}, model=ref)
    assert b.preprocess.mean == tuple(cfg["mean"]) and b.preprocess.crop == 32


def test_timm_offline_and_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(WeightsUnavailableError, match=str(tmp_path)):
        load_backbone("timm:resnet18")
    with pytest.raises(UnknownBackboneError, match="Did you mean: .*resnet18"):
        load_backbone("timm:resnet188:none")
