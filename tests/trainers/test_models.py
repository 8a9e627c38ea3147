"""Tests of the model registry: parameter counts against hand derivations, shapes, the
margin layers, and the errors for bad names and hyperparameters."""

from __future__ import annotations

from typing import Dict, List

import pytest
import torch
from torch import nn

from trainers import models
from trainers.models import ModelError, build, registry
from trainers.models.nin import NiN

# A small width per model keeps the forward passes fast on one CPU core.
SMALL_WIDTH = {"nin": 8, "mcnn": 4, "resnet18": 4, "resnet18k": 4, "resnet20": 4, "resnet32": 4, "resnet56": 4, "vgg11": 4, "vgg16": 4,
               "lenet_300_100": 30}
MARGIN_LAYER_COUNT = {"nin": 3, "mcnn": 4, "resnet18": 8, "resnet18k": 8, "resnet20": 9, "resnet32": 15, "resnet56": 27, "vgg11": 8,
                      "vgg16": 13, "lenet_300_100": 2}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---- parameter counts, each derived by hand --------------------------------------------------


def mcnn_count(c: int, n: int) -> int:
    # Convs 3→c→2c→4c→8c, 3×3 with bias: 9·(3c + 2c² + 8c² + 32c²) + 15c = 378c² + 42c;
    # BatchNorm 2·15c = 30c; linear 8c·n + n. For n = 10: 378c² + 152c + 10 (Nakkiran et al.).
    return 378 * c * c + 72 * c + 8 * c * n + n


def nin_count(w: int, d: int, n: int) -> int:
    # Block 1: 3×3 conv 3→w with bias 27w + w, two 1×1 convs 2(w² + w), three BatchNorms 6w
    #   = 2w² + 36w.
    # Blocks 2..d: 3×3 conv 9w² + w, two 1×1 convs 2(w² + w), three BatchNorms 6w = 11w² + 9w.
    # Head: 4×4 conv w→n with bias 16wn + n.
    return 2 * w * w + 36 * w + (d - 1) * (11 * w * w + 9 * w) + 16 * w * n + n


def vgg11_count(w: int, n: int) -> int:
    # Conv channels 3→w→2w→4w→4w→8w→8w→8w→8w. Weights 9·Σ c_in·c_out = 9(3w + 250w²) =
    # 27w + 2250w²; per conv a bias and BatchNorm (3·c_out): 3·43w = 129w; linear 8wn + n.
    return 2250 * w * w + 156 * w + 8 * w * n + n


def vgg16_count(w: int, n: int) -> int:
    # Conv channels 3→w→w→2w→2w→4w→4w→4w→8w→8w→8w→8w→8w→8w. Σ c_in·c_out = 3w + 399w²;
    # weights 27w + 3591w²; biases and BatchNorm 3·66w = 198w; linear 8wn + n.
    return 3591 * w * w + 225 * w + 8 * w * n + n


def resnet20_count(w: int, n: int) -> int:
    # Stem conv 27w + BatchNorm 2w. Stage 1: 3 blocks of two 9w² convs and two BatchNorms
    # (4w): 54w² + 12w. Stage 2: first block 18w² + 36w² + 8w + projection 2w² + BatchNorm 4w
    # = 56w² + 12w, two more 2(72w² + 8w). Stage 3: first 72w² + 144w² + 16w + 8w² + 8w =
    # 224w² + 24w, two more 2(288w² + 16w). Linear 4wn + n.
    # Total 1054w² + 125w + 4wn + n (272,474 at w = 16, n = 10).
    return 1054 * w * w + 125 * w + 4 * w * n + n


def resnet18k_count(k: int, n: int) -> int:
    # Stem 27k. Per pre-activation block: BatchNorm(c_in) + conv + BatchNorm(c_out) + conv
    # (+ 1×1 projection when the shape changes).
    # Stage 1: 2(18k² + 4k). Stage 2: 18k² + 36k² + 2k² + 6k, then 72k² + 8k.
    # Stage 3: 72k² + 144k² + 8k² + 12k, then 288k² + 16k.
    # Stage 4: 288k² + 576k² + 32k² + 24k, then 1152k² + 32k. Linear 8kn + n.
    # Total 2724k² + 133k + 8kn + n.
    return 2724 * k * k + 133 * k + 8 * k * n + n


def resnet18_count(w: int, n: int) -> int:
    # Post-activation (kuangliu) ResNet18: stem conv 27w + BatchNorm 2w. Per basic block two
    # 3×3 convs and two BatchNorms (+ a 1×1 projection and its BatchNorm when the shape changes).
    # Stage 1: 2(18w² + 4w). Stage 2: 18w² + 36w² + 8w + 2w² + 4w, then 72w² + 8w.
    # Stage 3: 72w² + 144w² + 16w + 8w² + 8w, then 288w² + 16w.
    # Stage 4: 288w² + 576w² + 32w + 32w² + 16w, then 1152w² + 32w. Linear 8wn + n.
    # Total 2724w² + 177w + 8wn + n (11,173,962 at w = 64, n = 10).
    return 2724 * w * w + 177 * w + 8 * w * n + n


@pytest.mark.parametrize("w,n", [(1, 10), (3, 100), (64, 10)])
def test_resnet18_count_matches_hand_derivation(w: int, n: int) -> None:
    assert count_parameters(build("resnet18", n, width=w)) == resnet18_count(w, n)
    if (w, n) == (64, 10):
        assert resnet18_count(w, n) == 11_173_962


@pytest.mark.parametrize("c", [1, 2, 5, 16])
def test_mcnn_parameter_count_matches_nakkiran_formula(c: int) -> None:
    assert count_parameters(build("mcnn", 10, width=c)) == 378 * c * c + 152 * c + 10
    assert count_parameters(build("mcnn", 100, width=c)) == mcnn_count(c, 100)


def test_mcnn_default_width_has_1558026_parameters() -> None:
    assert count_parameters(build("mcnn", 10)) == 1_558_026


def test_resnet18k_at_k64_has_11171146_parameters() -> None:
    model = build("resnet18k", 10)
    assert count_parameters(model) == 11_171_146 == resnet18k_count(64, 10)


@pytest.mark.parametrize("k,n", [(1, 10), (3, 100), (8, 10)])
def test_resnet18k_parameter_count_matches_hand_derivation(k: int, n: int) -> None:
    assert count_parameters(build("resnet18k", n, width=k)) == resnet18k_count(k, n)


@pytest.mark.parametrize("w,d,n", [(8, 2, 10), (8, 3, 10), (8, 4, 100), (5, 3, 100)])
def test_nin_parameter_count_matches_hand_derivation(w: int, d: int, n: int) -> None:
    assert count_parameters(build("nin", n, width=w, depth=d)) == nin_count(w, d, n)


def test_nin_width8_depth3_count_by_hand() -> None:
    # Block 1: 3·9·8 + 8 = 224, BN 16, two 1×1 convs 2·(64 + 8) = 144, two BNs 32 → 416.
    # Blocks 2, 3: 9·64 + 8 = 584, three BNs 48, two 1×1 convs 144 → 776 each.
    # Head: 16·8·10 + 10 = 1290.  Total 416 + 2·776 + 1290 = 3258.
    assert count_parameters(build("nin", 10, width=8, depth=3)) == 3258


def test_nin_default_has_925834_parameters() -> None:
    assert count_parameters(build("nin", 10)) == nin_count(192, 3, 10) == 925_834


def test_vgg_default_counts_match_hand_derivation() -> None:
    assert count_parameters(build("vgg11", 10)) == vgg11_count(64, 10) == 9_231_114
    assert count_parameters(build("vgg16", 10)) == vgg16_count(64, 10) == 14_728_266


@pytest.mark.parametrize("w,n", [(3, 10), (51, 100)])
def test_vgg_counts_at_other_widths(w: int, n: int) -> None:
    assert count_parameters(build("vgg11", n, width=w)) == vgg11_count(w, n)
    assert count_parameters(build("vgg16", n, width=w)) == vgg16_count(w, n)


@pytest.mark.parametrize("w,n", [(16, 10), (7, 100)])
def test_resnet20_count_matches_hand_derivation(w: int, n: int) -> None:
    assert count_parameters(build("resnet20", n, width=w)) == resnet20_count(w, n)


def test_resnet20_default_has_272474_parameters_with_projection_shortcuts() -> None:
    assert count_parameters(build("resnet20", 10)) == 272_474


# ---- forward passes --------------------------------------------------------------------------


def test_registry_names() -> None:
    assert models.names() == ["lenet_300_100", "mcnn", "nin", "resnet18", "resnet18k", "resnet20", "resnet32", "resnet56",
                             "vgg11", "vgg16"]
    assert models.names() == sorted(registry.names())
    assert models.get("nin") is registry.get("nin") and models.get("nin").builder == "trainers.models.nin:build_nin"


@pytest.mark.parametrize("name", sorted(SMALL_WIDTH))
@pytest.mark.parametrize("num_classes", [10, 100])
def test_every_model_maps_a_cifar_batch_to_logits(name: str, num_classes: int) -> None:
    torch.manual_seed(0)
    model = build(name, num_classes, width=SMALL_WIDTH[name], input_shape=(3, 32, 32))
    x = torch.randn(2, 3, 32, 32)
    for mode in (model.train, model.eval):
        mode()
        logits = model(x)
        assert logits.shape == (2, num_classes)
        assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ["nin", "mcnn", "resnet20", "vgg11"])
def test_default_width_forward(name: str) -> None:
    torch.manual_seed(0)
    assert build(name, 10).eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_nin_head_keeps_spatial_size_for_every_depth(depth: int) -> None:
    torch.manual_seed(0)
    model = build("nin", 10, width=8, depth=depth)
    shapes: List[torch.Size] = []
    handle = model.head.register_forward_hook(lambda _m, _i, out: shapes.append(out.shape))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    handle.remove()
    side = 32 // 2**depth
    assert shapes == [torch.Size([2, 10, side, side])]


def test_nin_valid_head_at_depth3_is_one_dot_product_over_the_4x4_map() -> None:
    # DEMOGEN's head: a 4×4 'VALID' convolution on the 4×4 map, i.e. a linear map of the
    # flattened map; compare with that dense computation.
    torch.manual_seed(0)
    model = NiN(10, width=6, depth=3, head_padding="valid").eval()
    features: List[torch.Tensor] = []
    model.blocks[-1].register_forward_hook(lambda _m, _i, out: features.append(out))
    logits = model(torch.randn(2, 3, 32, 32))
    dense = features[0].flatten(1) @ model.head.weight.flatten(1).T + model.head.bias
    torch.testing.assert_close(logits, dense)


def test_nin_same_head_equals_tensorflow_same_padding() -> None:
    # TensorFlow 'SAME' for a 4×4 kernel on a 2×2 map pads 1 before and 2 after: output (0,0)
    # sees kernel rows/cols 1..2, output (1,1) sees rows/cols 0..1. Check the mean logit by hand.
    torch.manual_seed(0)
    model = build("nin", 3, width=4, depth=4).eval()
    features: List[torch.Tensor] = []
    model.blocks[-1].register_forward_hook(lambda _m, _i, out: features.append(out))
    logits = model(torch.randn(2, 3, 32, 32))
    h, w = features[0], model.head.weight  # (2, 4, 2, 2), (3, 4, 4, 4)
    expected = torch.zeros(2, 3)
    for out_r in range(2):
        for out_c in range(2):
            for in_r in range(2):
                for in_c in range(2):
                    # Input pixel in_r sits at padded row in_r + 1; kernel row = that − out_r.
                    kr, kc = in_r + 1 - out_r, in_c + 1 - out_c
                    expected += h[:, :, in_r, in_c] @ w[:, :, kr, kc].T
    expected = expected / 4 + model.head.bias
    torch.testing.assert_close(logits, expected)


def test_nin_valid_head_rejects_maps_smaller_than_the_kernel() -> None:
    with pytest.raises(ValueError, match="head_padding"):
        NiN(10, width=4, depth=4, head_padding="valid")


def test_nin_dropout_is_active_in_train_mode_only() -> None:
    torch.manual_seed(0)
    model = build("nin", 10, width=8, depth=2, dropout=0.5)
    assert model.dropout.p == 0.5
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


def test_same_seed_gives_same_initial_weights() -> None:
    def init(seed: int) -> Dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        return build("resnet20", 10, width=4).state_dict()

    first, second, other = init(1), init(1), init(2)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


# ---- margin layers ---------------------------------------------------------------------------


def captured_margin_outputs(model: nn.Module, x: torch.Tensor):
    outputs: Dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_hook(lambda _m, _i, out, name=name: outputs.__setitem__(name, out))
        for name, module in model.margin_layers()
    ]
    logits = model(x)
    for handle in handles:
        handle.remove()
    return logits, outputs


@pytest.mark.parametrize("name", sorted(SMALL_WIDTH))
def test_margin_layers_name_every_block_and_keep_the_batch(name: str) -> None:
    torch.manual_seed(0)
    model = build(name, 10, width=SMALL_WIDTH[name], input_shape=(3, 32, 32)).eval()
    layers = model.margin_layers()
    expected_names = [f"block{i}" for i in range(1, MARGIN_LAYER_COUNT[name] + 1)]
    assert [n for n, _ in layers] == expected_names
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    logits, outputs = captured_margin_outputs(model, x)
    assert list(outputs) == expected_names
    for tensor in outputs.values():
        assert tensor.shape[0] == 2 and tensor.dim() == (2 if name == "lenet_300_100" else 4)
    # The margin measure differentiates a logit difference with respect to each hooked
    # tensor; that needs every hooked tensor on the path to the logits, unmodified.
    grads = torch.autograd.grad(logits[:, 0].sum(), list(outputs.values()))
    assert all(g.shape == t.shape and g.abs().sum() > 0 for g, t in zip(grads, outputs.values()))


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_nin_margin_layers_are_pre_relu_block_outputs(depth: int) -> None:
    torch.manual_seed(0)
    model = build("nin", 10, width=8, depth=depth).eval()
    _, outputs = captured_margin_outputs(model, torch.randn(2, 3, 32, 32))
    assert [tuple(t.shape) for t in outputs.values()] == [
        (2, 8, 32 // 2**i, 32 // 2**i) for i in range(1, depth + 1)
    ]
    # DEMOGEN's end points are pre-activations: the block output is their ReLU.
    block_out: List[torch.Tensor] = []
    model.blocks[0].register_forward_hook(lambda _m, _i, out: block_out.append(out))
    _, outputs = captured_margin_outputs(model, torch.randn(2, 3, 32, 32))
    assert (outputs["block1"] < 0).any()
    torch.testing.assert_close(block_out[0], torch.relu(outputs["block1"]))


# ---- errors ----------------------------------------------------------------------------------


def test_unknown_model_name_lists_the_allowed_names() -> None:
    with pytest.raises(ModelError, match="^model: got 'lenet', allowed: lenet_300_100, mcnn, nin, resnet18, resnet18k") as info:
        build("lenet", 10)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError):
        models.get("lenet")


@pytest.mark.parametrize(
    "name,kwargs,message",
    [
        ("resnet18k", {"depth": 3}, "model resnet18k: hyperparameter 'depth' is not supported (allowed: width)"),
        ("mcnn", {"dropout": 0.2}, "model mcnn: hyperparameter 'dropout' is not supported (allowed: width)"),
        ("vgg16", {"depth": 2}, "model vgg16: hyperparameter 'depth' is not supported (allowed: width)"),
        ("resnet20", {"dropout": 0.5}, "model resnet20: hyperparameter 'dropout' is not supported (allowed: width)"),
    ],
)
def test_unsupported_hyperparameters_raise_one_line_errors(name: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ModelError) as info:
        build(name, 10, **kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"width": 0}, "width"),
        ({"width": True}, "width"),
        ({"width": 2.0}, "width"),
        ({"depth": -1}, "depth"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
    ],
)
def test_out_of_range_hyperparameters_are_rejected(kwargs: dict, field: str) -> None:
    with pytest.raises(ModelError, match=f"model nin: hyperparameter '{field}'"):
        build("nin", 10, **kwargs)


def test_num_classes_must_be_positive() -> None:
    with pytest.raises(ModelError, match="num_classes"):
        build("mcnn", 0)


def test_unset_hyperparameters_use_model_defaults() -> None:
    # width=None, depth=None and dropout=0 are "not set": accepted by every model.
    for name in models.names():
        assert models.supported_hyperparameters(name)[0] == "width"
    assert models.supported_hyperparameters("nin") == ["width", "depth", "dropout"]
    model = build("nin", 10, width=None, depth=None, dropout=0.0)
    assert len(model.blocks) == 3 and model.blocks[0].conv1.out_channels == 192


def test_every_spec_default_is_its_builders() -> None:
    import inspect

    from trainers.registry import resolve

    for name in models.names():
        spec = models.get(name)
        parameters = inspect.signature(resolve(spec.builder)).parameters
        assert [h for h in models.HYPERPARAMETERS if h in parameters] == list(spec.hyperparameters), name
        for key in ("width", "depth"):
            if key in parameters:
                assert parameters[key].default == getattr(spec, key), (name, key)
        assert ("input_shape" in parameters) == (spec.input_shapes is None), name
