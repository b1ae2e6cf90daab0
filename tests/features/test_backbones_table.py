"""Issue 11.6: the backbone families are one table (a family is one entry), and a timm weights
tag that timm does not know is refused instead of silently loading the default weights."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

from linprobe.features.backbones import (
    DEFAULT_LISTED,
    FAMILIES,
    UnknownBackboneError,
    WeightsUnavailableError,
    check_spec,
    list_backbones,
    load_backbone,
    parse_spec,
)
from linprobe.features.backbones import registry
from linprobe.features.backbones.preprocess import Preprocess
from linprobe.features.backbones.types import LoadedNet


def test_families_come_from_the_table():
    assert FAMILIES == tuple(registry._TABLE) == ("lite", "torchvision", "timm", "file")
    assert DEFAULT_LISTED == ("lite", "torchvision")
    assert parse_spec("file:C:/models/a:b.pth") == ("file", "C:/models/a:b.pth", None)
    with pytest.raises(ValueError, match="'families' parameter.*'lite', 'torchvision', 'timm'. Got \\['file'\\]"):
        list_backbones(("file",))


def _tiny(model: str, weights: str | None, *, image_size: int | None, offline: bool) -> LoadedNet:
    """A real (small) classifier: conv -> pool -> Linear head."""
    torch.manual_seed(0)
    trunk = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    net = torch.nn.Sequential(trunk, torch.nn.Linear(4, 2))
    return LoadedNet(spec=f"tiny:{model}", net=net, preprocess=Preprocess(18, 16, (0.5,) * 3, (0.5,) * 3, "bilinear"),
                     weights="none", separate_head=lambda n: (n[0], n[1], 4))


def test_a_new_family_is_one_table_entry(monkeypatch):
    checked = []
    family = registry.Family("tiny", lambda model, weights: checked.append((model, weights)), _tiny,
                             lambda pattern, include_random: [{"spec": "tiny:net"}], listed=True)
    monkeypatch.setitem(registry._TABLE, "tiny", family)
    check_spec("tiny:net:w")
    assert checked == [("net", "w")]
    b = load_backbone("tiny:net")
    x = torch.randn(2, 3, 16, 16)
    assert b.model(x).shape == (2, 4) and b.spec == "tiny:net" and b.num_params == 3 * 4 * 9 + 4 + 4 * 2 + 2
    assert list_backbones(("tiny",)) == [{"spec": "tiny:net"}]


@pytest.mark.parametrize("spec", ["timm:resnet18:a1_in1", "timm:resnet18.a1_in1", "timm:resnet18.a1_in1:none"])
def test_unknown_timm_tag_is_refused_with_close_matches(spec):
    for call in (check_spec, load_backbone):
        with pytest.raises(UnknownBackboneError,
                           match=r"Unknown weights tag 'a1_in1' for timm model 'resnet18'\. Known tags: "
                                 r"a1_in1k, .*tv_in1k; .*Did you mean: a1_in1k"):
            call(spec)


def test_two_timm_tags_are_refused():
    with pytest.raises(UnknownBackboneError, match="names two weights tags"):
        check_spec("timm:resnet18.a1_in1k:tv_in1k")


def _hf_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path))


def _put_snapshot(cache, repo: str, state: dict) -> None:
    """A Hugging Face hub snapshot of ``state`` as model.safetensors (the HF_HOME layout)."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    (folder / "snapshots" / ("0" * 40)).mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, folder / "snapshots" / ("0" * 40) / "model.safetensors")


def test_timm_tag_loads_that_tags_weights(tmp_path, monkeypatch):
    _hf_cache(tmp_path, monkeypatch)
    # Not on disk: the message names the tag's own folder, not the default weights' folder.
    with pytest.raises(WeightsUnavailableError, match=r"models--timm--resnet18\.tv_in1k"):
        check_spec("timm:resnet18:tv_in1k")
    torch.manual_seed(1)
    ref = timm.create_model("resnet18", pretrained=False).eval()
    _put_snapshot(tmp_path, "timm/resnet18.tv_in1k", ref.state_dict())
    b = load_backbone("timm:resnet18:tv_in1k")
    assert b.spec == "timm:resnet18:tv_in1k" and b.weights == "tv_in1k"
    assert (b.preprocess.resize, b.preprocess.crop) == (256, 224)  # tv_in1k's crop_pct 0.875
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(b.head(b.model(x)), ref(x), atol=1e-4)
    with pytest.raises(WeightsUnavailableError, match=r"models--timm--resnet18\.a1_in1k"):
        load_backbone("timm:resnet18")  # the default tag is another file
