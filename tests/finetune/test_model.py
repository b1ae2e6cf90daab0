"""The fine-tune network: arms' specs, blocks and unfreezing, safetensors round trip."""

from __future__ import annotations

import pytest
import torch

from linprobe.finetune.model import (arm_spec, blocks, build_net, load_finetuned, param_groups,
                                     save_bytes, set_trainable, train_mode)


def test_arm_specs():
    assert arm_spec("lite:efficientnet-lite0", "finetune") == "lite:efficientnet-lite0"
    assert arm_spec("lite:efficientnet-lite0", "scratch") == "lite:efficientnet-lite0:none"
    assert arm_spec("torchvision:resnet18:IMAGENET1K_V1", "scratch") == "torchvision:resnet18:none"
    with pytest.raises(ValueError, match="random-init; use the arm 'scratch'"):
        arm_spec("torchvision:resnet18:none", "finetune")
    with pytest.raises(ValueError, match="file: backbone cannot give"):
        arm_spec("file:model.pt", "scratch")


def test_pretrained_trunk_is_the_probes_embedding_and_scratch_is_random(one_torch_thread):
    from linprobe.features.backbones import load_backbone

    net, bb = build_net("lite:efficientnet-lite0", "finetune", 3, image_size=32, layer=None,
                        init_seed=None, seed=0)
    frozen = load_backbone("lite:efficientnet-lite0", image_size=32).model
    x = torch.randn(2, 3, 32, 32)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net.trunk(x), frozen(x))
        assert net(x).shape == (2, 3) and net.head.in_features == bb.embed_dim == 1280
    scratch, _ = build_net("lite:efficientnet-lite0", "scratch", 3, image_size=32, layer=None,
                           init_seed=None, seed=0)
    again, _ = build_net("lite:efficientnet-lite0", "scratch", 3, image_size=32, layer=None,
                         init_seed=None, seed=0)
    w = "trunk.trunk.net._conv_stem.weight"
    assert not torch.equal(scratch.state_dict()[w], net.state_dict()[w])
    assert torch.equal(scratch.state_dict()[w], again.state_dict()[w])   # seeded


def test_unfreeze_last_blocks(one_torch_thread):
    net, _ = build_net("torchvision:resnet18:none", "scratch", 4, image_size=32, layer=None,
                       init_seed=0, seed=0)
    assert [type(b).__name__ for b in blocks(net.trunk)] == ["BasicBlock"] * 8
    n_all, n_blocks = set_trainable(net, None)
    assert n_blocks == 8 and n_all == sum(p.numel() for p in net.parameters())
    n_two, _ = set_trainable(net, 2)
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert any(n.startswith("trunk.trunk.layer4.0.") for n in trainable)
    assert not any(n.startswith(("trunk.trunk.layer3.", "trunk.trunk.conv1")) for n in trainable)
    assert {"head.weight", "head.bias"} <= trainable and n_two < n_all
    train_mode(net)   # frozen BatchNorm keeps its running statistics
    assert not net.trunk.trunk.bn1.training and net.trunk.trunk.layer4[1].bn2.training
    set_trainable(net, 0)
    assert {n for n, p in net.named_parameters() if p.requires_grad} == {"head.weight", "head.bias"}
    decay, no_decay = param_groups(net, 0.05)
    assert decay["params"][0] is net.head.weight and no_decay["weight_decay"] == 0.0
    with pytest.raises(ValueError, match="asks for the last 9 blocks, but this backbone has 8"):
        set_trainable(net, 9)


def test_saved_network_loads_without_pickle(tmp_path, one_torch_thread):
    from linprobe.features.backbones.lite import lite_preprocess

    net, _ = build_net("lite:efficientnet-lite0", "finetune", 3, image_size=32, layer=None,
                       init_seed=None, seed=1)
    with torch.no_grad():
        net.head.weight.mul_(3)   # differs from any fresh head
    path = tmp_path / "net.safetensors"
    pre = lite_preprocess("efficientnet-lite0").with_image_size(32)
    path.write_bytes(save_bytes(net, {"spec": "lite:efficientnet-lite0", "arm": "finetune",
                                      "class_names": ["a", "b", "c"], "preprocess": pre.to_dict()}))
    loaded, meta = load_finetuned(path)
    assert meta["class_names"] == ["a", "b", "c"] and not loaded.training
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net.eval()(x))


def test_scratch_batchnorm_statistics_catch_up_within_an_epoch(one_torch_thread):
    # EfficientNet-Lite's BatchNorm momentum is TF's 0.01: from random init, 4 demo epochs
    # (~120 steps) left the running statistics so far off that eval mode predicted one class
    # (scratch val accuracy 0.1 on every epoch while its training loss fell).
    net, _ = build_net("lite:efficientnet-lite0", "scratch", 10, image_size=32, layer=None,
                       init_seed=0, seed=0)
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    net.train()
    with torch.no_grad():
        for _ in range(30):                 # an epoch of the demo at batch 32
            train_out = net(x)
        net.eval()
        eval_out = net(x)
    # Eval-mode logits on the batch the statistics came from: 0.05x the train-mode spread with
    # momentum 0.01, 0.43x with 0.1 (the rest: unbiased running variance over 49 layers at 1x1).
    ratio = float(eval_out.std() / train_out.std())
    assert 0.25 < ratio < 4.0, ratio
