"""The compiled inference pass of a fused model gives bitwise what the Python path gives."""

import copy
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import aignet
from aignet.engine.bench import synthetic_models
from aignet.engine.quantize import to_precision
from aignet.nn import kernels
from helpers import warmed_model

pytestmark = pytest.mark.skipif(kernels.load() is None, reason="the C++ kernels did not build")

# Identity and zero-padding shortcuts (A), projections (B), bottlenecks with the max-pool stem.
MODELS = [("aig_resnet20_cifar", 32, {}), ("aig_resnet20_cifar", 32, {"shortcut": "B"}),
          ("aig_resnet50", 64, {"target_rates": "uniform:0.5"}), ("resnet20_cifar", 32, {})]


def _python(model, x):
    """The reference: the same fused model with its compiled pass detached."""
    compiled, model.fast_forward = model.fast_forward, None
    try:
        with torch.inference_mode():
            return model(x)
    finally:
        model.fast_forward = compiled


def _compiled(model, x):
    with torch.inference_mode():
        out = model.fast_forward(x)
    assert out is not None, "the compiled pass declined a model it should run"
    return out


def _assert_identical(a, b):
    assert torch.equal(a.logits, b.logits)
    assert torch.equal(a.gates, b.gates)


@pytest.mark.parametrize("name,size,kwargs", MODELS)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("batch", [1, 7])
def test_compiled_pass_is_bitwise_the_python_path(name, size, kwargs, channels_last, batch):
    fused = aignet.fuse(warmed_model(name, size, **kwargs), channels_last=channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    partial = False
    for threshold in (0.0, 0.3, 0.5, 0.8, 1.0):
        aignet.set_gate_mode(fused, inference="deterministic", threshold=threshold)
        x = torch.randn(batch, 3, size, size).contiguous(memory_format=fmt)
        out = _compiled(fused, x)
        _assert_identical(out, _python(fused, x))
        partial |= bool(((out.gates == 0).any(0) & (out.gates != 0).any(0)).any())
    if batch > 1 and name.startswith("aig"):
        assert partial, "no block had both open and closed images: the test tests nothing"


@pytest.mark.parametrize("channels_last", [False, True])
def test_reused_gate_sums_follow_every_changed_image(channels_last):
    # The compiled pass keeps each image's channel sums from one gate to the next and reads an
    # image again only where its map changed. Gates set to open for half of the images (their
    # margins' median as threshold) make every decision sensitive to a stale sum.
    gated, _, calib = synthetic_models("aig_resnet32_cifar", rate=0.5)
    fused = aignet.fuse(gated, channels_last=channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = calib[:24].contiguous(memory_format=fmt)
    out = _compiled(fused, x)
    _assert_identical(out, _python(fused, x))
    partial = (out.gates == 0).any(0) & (out.gates == 1).any(0)
    assert 0.3 < out.gates.mean() < 0.7 and partial.all()
    kernels.load().set_merge_fusion(False)  # the A/B switch of benchmarks/packed_conv.py
    try:
        _assert_identical(_compiled(fused, x), out)
    finally:
        kernels.load().set_merge_fusion(True)


@pytest.mark.parametrize("keep_float", [("layer1",), ()])
@pytest.mark.parametrize("batch", [1, 7])
def test_bf16_model_with_its_casts_is_bitwise_the_python_path(keep_float, batch):
    fused = aignet.fuse(warmed_model("aig_resnet20_cifar", 32, shortcut="B"), channels_last=True)
    to_precision(fused, "bf16", keep_float=keep_float)
    dtype = torch.float32 if keep_float else torch.bfloat16  # what the stem takes
    x = torch.randn(batch, 3, 32, 32).to(dtype).contiguous(memory_format=torch.channels_last)
    out = _compiled(fused, x)
    _assert_identical(out, _python(fused, x))
    assert out.logits.dtype == torch.bfloat16
    with torch.inference_mode():  # an input in another dtype than the stem's: Python's error
        assert fused.fast_forward(x.double()) is None


def test_bf16_keeps_the_float32_parts_exact():
    fused = aignet.fuse(warmed_model("aig_resnet20_cifar", 32))
    reference = copy.deepcopy(fused)
    to_precision(fused, "bf16")
    for kept, original in ((fused.layer1, reference.layer1), (fused.conv1, reference.conv1),
                           (fused.layer3[1].gate, reference.layer3[1].gate)):
        for (name, a), b in zip(kept.state_dict().items(), original.state_dict().values(),
                                strict=True):
            assert a.dtype == b.dtype and torch.equal(a, b), name
    assert fused.layer2[0].conv1.weight.dtype == torch.bfloat16


def test_all_mode_runs_every_block_and_reports_ones():
    fused = aignet.fuse(warmed_model("aig_resnet20_cifar", 32))
    aignet.set_gate_mode(fused, inference="all")
    x = torch.randn(3, 3, 32, 32)
    out = _compiled(fused, x)
    _assert_identical(out, _python(fused, x))
    assert (out.gates == 1).all()


def test_thresholds_are_read_at_each_call():
    fused = aignet.fuse(warmed_model("aig_resnet20_cifar", 32))
    x = torch.randn(8, 3, 32, 32)
    rates = []
    for threshold in (0.2, 0.9):
        aignet.set_gate_mode(fused, threshold=threshold)
        rates.append(_compiled(fused, x).gates.mean().item())
    assert rates[0] > rates[1]


def _int8_model(keep_float=("layer1",), channels_last=True):
    fused = aignet.fuse(warmed_model("aig_resnet20_cifar", 32, shortcut="B"),
                        channels_last=channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    calibration = [torch.randn(32, 3, 32, 32).contiguous(memory_format=fmt) for _ in range(2)]
    return to_precision(fused, "int8", calibration, keep_float=keep_float)


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize("keep_float", [("layer1",), ()])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("batch", [1, 7])
def test_int8_model_is_bitwise_the_python_path(keep_float, channels_last, batch):
    fused = _int8_model(keep_float, channels_last)
    quantized = [n for n, m in fused.named_modules() if type(m) is torch.ao.nn.quantized.Conv2d]
    assert len(quantized) >= 8, "too few branches were quantized for the test to mean much"
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    partial = False
    for threshold in (0.3, 0.5, 0.8):
        aignet.set_gate_mode(fused, inference="deterministic", threshold=threshold)
        x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=fmt)
        out = _compiled(fused, x)
        _assert_identical(out, _python(fused, x))
        partial |= bool(((out.gates == 0).any(0) & (out.gates != 0).any(0)).any())
    assert partial or batch == 1, "no block had both open and closed images"


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
def test_int8_plan_follows_new_packed_weights_scales_and_zero_points():
    # load_state_dict replaces an int8 convolution's packed weight and assigns its scale and
    # zero point (plain attributes), and changes the Quantize buffers in place.
    fused = _int8_model()
    aignet.set_gate_mode(fused, inference="all")
    x = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    before = _compiled(fused, x)
    state = fused.state_dict()
    state["layer2.1.conv1.0.scale"] = state["layer2.1.conv1.0.scale"] * 1.5
    state["layer2.1.conv1.1.scale"] = state["layer2.1.conv1.1.scale"] * 0.5
    state["layer3.0.conv2.0.weight"] = torch.quantize_per_channel(
        state["layer3.0.conv2.0.weight"].dequantize().neg(),
        state["layer3.0.conv2.0.weight"].q_per_channel_scales(),
        state["layer3.0.conv2.0.weight"].q_per_channel_zero_points(), 0, torch.qint8)
    fused.load_state_dict(state)
    out = _compiled(fused, x)
    _assert_identical(out, _python(fused, x))
    assert not torch.equal(out.logits, before.logits)


@pytest.mark.parametrize("change", ["grad", "masked", "stochastic", "kernels_off"])
def test_declines_what_only_the_python_path_does(change, monkeypatch):
    fused = aignet.fuse(warmed_model("aig_resnet20_cifar", 32))
    x = torch.randn(2, 3, 32, 32)
    if change == "masked":
        aignet.set_execution(fused, "masked")
    elif change == "stochastic":
        aignet.set_gate_mode(fused, inference="stochastic")
    elif change == "kernels_off":
        monkeypatch.setattr(kernels, "load", lambda: None)
    context = torch.enable_grad() if change == "grad" else torch.inference_mode()
    with context:
        assert fused.fast_forward(x) is None
        out = fused(x)  # and the model still runs, through Python
    assert out.logits.shape == (2, 10)


def test_a_converted_model_declines():
    fused = aignet.fuse(warmed_model("aig_resnet20_cifar", 32))
    x = torch.randn(2, 3, 32, 32)
    _compiled(fused, x)
    fused.double()  # the plan's tensors change dtype in place
    with torch.inference_mode():
        assert fused.fast_forward(x) is None
        assert fused.fast_forward(x.double()) is None


def test_hooks_see_every_call():
    fused = aignet.fuse(warmed_model("aig_resnet20_cifar", 32))
    x = torch.randn(2, 3, 32, 32)
    _compiled(fused, x)  # the plan exists before the hook
    calls = []
    handle = fused.layer2[0].conv1.register_forward_hook(lambda *_: calls.append(1))
    with torch.inference_mode():
        assert fused.fast_forward(x) is None
        fused(x)
    assert calls
    handle.remove()
    _compiled(fused, x)


def test_in_place_weight_changes_are_seen_and_replaced_modules_rebuild_the_plan():
    fused = aignet.fuse(warmed_model("aig_resnet20_cifar", 32))
    x = torch.randn(4, 3, 32, 32)
    before = _compiled(fused, x)
    with torch.no_grad():
        fused.fc.weight.mul_(2.0)  # in place: the plan holds the same tensor
    _assert_identical(_compiled(fused, x), _python(fused, x))
    state = fused.state_dict()
    state["layer2.1.gate.offset"] = state["layer2.1.gate.offset"] + 50.0  # opens that gate
    fused.load_state_dict(state)
    out = _compiled(fused, x)
    _assert_identical(out, _python(fused, x))
    assert (out.gates[:, 4] == 1).all()
    fused.fc = torch.nn.Linear(64, 10)  # a new module: the plan is rebuilt around it
    out = _compiled(fused, x)
    _assert_identical(out, _python(fused, x))
    assert not torch.equal(out.logits, before.logits)


@pytest.mark.filterwarnings("ignore:TF32 acceleration")
def test_packed_convolutions_follow_in_place_weight_changes():
    # Channels_last batches of two or more images run oneDNN on weights packed at the first
    # call (csrc/packed_conv.cpp); an in-place change of a weight must reach them.
    fused = aignet.fuse(warmed_model("aig_resnet20_cifar", 32, shortcut="B"), channels_last=True)
    aignet.set_gate_mode(fused, inference="all")
    x = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    before = _compiled(fused, x)
    with torch.no_grad():
        fused.layer2[0].conv1.weight.mul_(1.5)
        fused.layer2[0].downsample[0].weight.mul_(0.5)
    out = _compiled(fused, x)
    _assert_identical(out, _python(fused, x))
    assert not torch.equal(out.logits, before.logits)
    with torch.backends.mkldnn.flags(enabled=False):  # ATen's own kernels then: so do we
        _assert_identical(_compiled(fused, x), _python(fused, x))
    kernels.load().set_packed_convolutions(False)  # the A/B switch of benchmarks/packed_conv.py
    try:
        _assert_identical(_compiled(fused, x), out)
    finally:
        kernels.load().set_packed_convolutions(True)


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_concurrent_calls_give_what_one_call_gives(precision):
    # The plan runs without the GIL; threads that first reach a convolution together pack its
    # weight once (a mutex per convolution) and all get the reference result, also for int8
    # branches and sub-batches of different sizes.
    if precision == "int8":
        fused = _int8_model(keep_float=())
    else:
        fused = aignet.fuse(warmed_model("aig_resnet20_cifar", 32), channels_last=True)
    aignet.set_gate_mode(fused, inference="deterministic", threshold=0.5)
    xs = [torch.randn(n, 3, 32, 32).contiguous(memory_format=torch.channels_last)
          for n in (6, 5, 1, 8)]
    expected = [_python(fused, x) for x in xs]
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda x: _compiled(fused, x), xs * 3))
    for out, ref in zip(outs, expected * 3, strict=True):
        _assert_identical(out, ref)


def test_a_copy_runs_its_own_plan():
    fused = aignet.fuse(warmed_model("aig_resnet20_cifar", 32))
    x = torch.randn(4, 3, 32, 32)
    _compiled(fused, x)
    twin = copy.deepcopy(fused)
    assert twin.fast_forward.model is twin
    with torch.no_grad():
        twin.fc.bias.add_(1.0)
    assert torch.allclose(_compiled(twin, x).logits, _compiled(fused, x).logits + 1.0)


def test_predictor_runs_the_compiled_pass():
    model = warmed_model("aig_resnet20_cifar", 32)
    predictor = aignet.Predictor(model)
    x = torch.randn(5, 3, 32, 32)
    logits, record = predictor(x)
    reference = _python(predictor.model, x)
    assert torch.equal(logits, reference.logits)
    assert torch.equal(record.gates, reference.gates)
