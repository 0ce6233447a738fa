import pytest
import torch
from torch.ao.nn.quantized import Conv2d as QuantizedConv2d
from torch.ao.nn.quantized import DeQuantize, Quantize

import aignet
from aignet.engine.quantize import quantize_branches
from aignet.nn.gates import set_gate_mode
from helpers import warmed_model


def quantized_convs(module: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in module.modules() if isinstance(m, QuantizedConv2d)]


@pytest.mark.parametrize("batch", [1, 32])
def test_int8_predictor_agrees_with_fp32(batch):
    model = warmed_model("aig_resnet20_cifar", 32, spread=0.5)
    torch.manual_seed(1)
    calibration = torch.randn(128, 3, 32, 32)
    x = torch.randn(batch, 3, 32, 32)
    fp32 = aignet.Predictor(model, channels_last=True)
    int8 = aignet.Predictor(model, channels_last=True, precision="int8", calibration=calibration,
                            keep_float=())
    a, b = fp32(x), int8(x)
    assert b.logits.dtype == torch.float32
    # Every branch convolution is int8 (2 per block x 9 blocks); stem and classifier are not.
    assert len(quantized_convs(int8.model)) == 18
    assert type(int8.model.conv1) is torch.nn.Conv2d and type(int8.model.fc) is torch.nn.Linear
    assert (a.record.executed == b.record.executed).float().mean() >= 0.9
    assert torch.allclose(a.logits, b.logits, atol=0.5, rtol=0.1)
    # The source model is untouched.
    assert not quantized_convs(model)


def test_int8_keeps_the_first_stage_in_float_by_default():
    model = warmed_model("aig_resnet20_cifar", 32, open_bias=1e4)
    predictor = aignet.Predictor(model, precision="int8", calibration=torch.randn(64, 3, 32, 32))
    runner = predictor.model
    assert not quantized_convs(runner.layer1)
    assert len(quantized_convs(runner.layer2)) == len(quantized_convs(runner.layer3)) == 6
    block = runner.layer2[1]
    assert isinstance(block.conv1[0], Quantize) and isinstance(block.conv2[1], DeQuantize)


def test_a_branch_no_calibration_image_runs_stays_float():
    # Gates closed for every calibration image: nothing to calibrate, so nothing is quantized
    # and the model is exactly the fp32 one, even on images that open the gates later.
    model = warmed_model("aig_resnet20_cifar", 32, open_bias=-1e4)
    int8 = aignet.Predictor(model, precision="int8", calibration=torch.randn(8, 3, 32, 32),
                            keep_float=())
    assert not quantized_convs(int8.model)
    set_gate_mode(int8.model, inference="all")  # now every gate opens
    x = torch.randn(4, 3, 32, 32)
    fp32 = aignet.Predictor(model, mode="all")
    torch.testing.assert_close(fp32(x).logits, int8(x).logits)


def test_int8_needs_calibration_and_a_fused_model():
    model = warmed_model("aig_resnet20_cifar", 32)
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(ValueError, match="calibration"):
        aignet.Predictor(model, precision="int8")
    with pytest.raises(ValueError, match="fused"):
        aignet.Predictor(model, precision="int8", fused=False, calibration=x)
    with pytest.raises(ValueError, match="fused model"):
        quantize_branches(model, [x])
    with pytest.raises(ValueError, match="no images"):
        aignet.Predictor(model, precision="int8", calibration=[])


def _dtypes(module: torch.nn.Module) -> set[torch.dtype]:
    return {p.dtype for n, p in module.named_parameters() if "gate" not in n}


def test_bf16_keeps_the_input_stem_and_first_stage_in_float_by_default():
    model = warmed_model("aig_resnet20_cifar", 32, spread=0.5)
    x = torch.randn(16, 3, 32, 32)
    fp32 = aignet.Predictor(model, channels_last=True)(x)
    predictor = aignet.Predictor(model, channels_last=True, precision="bf16")
    runner = predictor.model
    assert predictor.dtype == torch.float32
    assert _dtypes(runner.conv1) == _dtypes(runner.layer1) == {torch.float32}
    assert _dtypes(runner.layer2) == _dtypes(runner.layer3) == _dtypes(runner.fc) == {
        torch.bfloat16}
    out = predictor(x)
    # The first stage computes exactly what fp32 computes: its three gates decide alike.
    assert torch.equal(out.record.executed[:, :3], fp32.record.executed[:, :3])
    assert torch.allclose(out.logits, fp32.logits, atol=0.5, rtol=0.1)


@pytest.mark.parametrize("keep,stem", [((), torch.bfloat16), (("layer2",), torch.bfloat16),
                                       (("layer1", "layer3"), torch.float32)])
def test_bf16_casts_where_the_precision_changes(keep, stem):
    model = warmed_model("aig_resnet20_cifar", 32, spread=0.5)
    predictor = aignet.Predictor(model, channels_last=True, precision="bf16", keep_float=keep)
    runner = predictor.model
    assert predictor.dtype == _dtypes(runner.conv1).pop() == stem
    for stage in ("layer1", "layer2", "layer3"):
        want = torch.float32 if stage in keep else torch.bfloat16
        assert _dtypes(getattr(runner, stage)) == {want}
    x = torch.randn(8, 3, 32, 32)
    out, fp32 = predictor(x), aignet.Predictor(model, channels_last=True)(x)
    assert out.logits.dtype == torch.float32
    assert torch.allclose(out.logits, fp32.logits, atol=0.5, rtol=0.1)
