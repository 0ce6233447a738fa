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
