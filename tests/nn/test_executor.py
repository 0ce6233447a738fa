"""Sparse execution must give what masked execution (the original code) gives, and save MACs."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import aignet
from aignet.engine.flops import profile_macs
from aignet.nn import executor, kernels
from aignet.nn.executor import merge_rows, select_rows, write_rows
from helpers import warmed_model

MODELS = [("aig_resnet20_cifar", 32, {}), ("aig_resnet20_cifar", 32, {"shortcut": "B"}),
          ("aig_resnet18", 64, {}), ("aig_resnet50", 64, {"target_rates": "uniform:0.5"})]
MODES = [("deterministic", 0.3), ("deterministic", 0.5), ("deterministic", 0.8),
         ("stochastic", 0.5), ("expected", 0.5), ("all", 0.5)]


def _run(model, x, execution, mode, threshold):
    aignet.set_execution(model, execution)
    aignet.set_gate_mode(model, inference=mode, threshold=threshold,
                         generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        return model(x)


def _assert_same(a, b):
    scale = max(1.0, a.logits.abs().max().item())
    assert (a.logits - b.logits).abs().max().item() <= 1e-4 * scale
    assert torch.equal(a.gates, b.gates)


@pytest.mark.parametrize("name,size,kwargs", MODELS)
@pytest.mark.parametrize("batch", [1, 7, 32])
def test_sparse_equals_masked_in_every_mode(name, size, kwargs, batch):
    model = warmed_model(name, size, **kwargs)
    x = torch.randn(batch, 3, size, size)
    partial = 0
    for mode, threshold in MODES:
        masked = _run(model, x, "masked", mode, threshold)
        sparse = _run(model, x, "sparse", mode, threshold)
        _assert_same(masked, sparse)
        partial += bool(((masked.gates == 0).any(0) & (masked.gates != 0).any(0)).any())
    if batch > 1:
        assert partial, "no block had both open and closed images: the test tests nothing"


@pytest.mark.parametrize("open_bias", [-30.0, 30.0])
@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_all_closed_and_all_open(open_bias, batch, shortcut):
    model = warmed_model("aig_resnet20_cifar", 32, spread=1e-3, open_bias=open_bias,
                         shortcut=shortcut)
    x = torch.randn(batch, 3, 32, 32)
    masked = _run(model, x, "masked", "deterministic", 0.5)
    sparse = _run(model, x, "sparse", "deterministic", 0.5)
    _assert_same(masked, sparse)
    assert (sparse.gates == (1.0 if open_bias > 0 else 0.0)).all()


def test_sparse_leaves_the_input_tensor_alone():
    model = warmed_model("aig_resnet20_cifar", 32)
    x = torch.randn(8, 3, 32, 32)
    before = x.clone()
    with torch.no_grad():
        model(x)
    assert torch.equal(x, before)


def test_sparse_with_gradients_matches_masked_input_gradient():
    model = warmed_model("aig_resnet20_cifar", 32)
    x = torch.randn(6, 3, 32, 32)
    grads = []
    for execution in ("masked", "sparse"):
        aignet.set_execution(model, execution)
        xi = x.clone().requires_grad_()
        model(xi).logits.sum().backward()
        grads.append(xi.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("name,size,kwargs", MODELS[:3])
def test_fused_equals_unfused(name, size, kwargs, channels_last):
    model = warmed_model(name, size, **kwargs)
    fused = aignet.fuse(model, channels_last=channels_last)
    assert fused.is_fused and not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(9, 3, size, size)
    for mode, threshold in MODES:
        ref = _run(model, x, "masked", mode, threshold)
        xf = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        got = _run(fused, xf, "sparse", mode, threshold)
        _assert_same(ref, got)


@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_batch_of_one_decides_as_the_batch(channels_last):
    # A single CPU image takes the gates' numpy path (FusedGate._decide_one).
    model = warmed_model("aig_resnet20_cifar", 32, shortcut="B")
    fused = aignet.fuse(model, channels_last=channels_last)
    x = torch.randn(9, 3, 32, 32)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for threshold in (0.3, 0.5, 0.8):
        batch = _run(fused, x, "sparse", "deterministic", threshold)
        for i in range(len(x)):
            one = _run(fused, x[i:i + 1], "sparse", "deterministic", threshold)
            assert torch.equal(one.gates[0], batch.gates[i])
            assert torch.allclose(one.logits[0], batch.logits[i], atol=1e-4)


def test_fused_model_refuses_training():
    fused = aignet.fuse(aignet.create_model("aig_resnet20_cifar"))
    with pytest.raises(RuntimeError, match="inference-only"):
        fused.train()


def test_rows_keep_channels_last_layout():
    x = torch.randn(6, 8, 5, 5).contiguous(memory_format=torch.channels_last)
    index = torch.tensor([1, 4])
    rows = select_rows(x, index)
    assert rows.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(rows, x[index])
    out = write_rows(x.clone(), index, torch.zeros_like(rows))
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert not out[index].any() and torch.equal(out[[0, 2, 3, 5]], x[[0, 2, 3, 5]])


def _flops_per_batch(model, x):
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        out = model(x)
    return out, counter.get_total_flops() // 2


@pytest.mark.parametrize("mode", ["deterministic", "stochastic", "expected"])
def test_flop_counter_agrees_with_recorded_per_image_macs(mode):
    model = warmed_model("aig_resnet20_cifar", 32, shortcut="B")
    aignet.set_gate_mode(model, inference=mode, generator=torch.Generator().manual_seed(1))
    profile = profile_macs(model)
    out, counted = _flops_per_batch(model, torch.randn(16, 3, 32, 32))
    macs = profile.per_image(out.gates, gates_evaluated=mode != "expected")
    assert counted == int(macs.sum().item())
    if mode == "deterministic":
        assert counted < 16 * profile.dense  # something was skipped


def test_per_image_macs_at_the_extremes():
    x = torch.randn(4, 3, 32, 32)
    for bias, expected in ((30.0, "dense"), (-30.0, "fixed")):
        model = warmed_model("aig_resnet20_cifar", 32, spread=1e-3, open_bias=bias)
        profile = profile_macs(model)
        record = aignet.Predictor(model)(x).record
        target = profile.dense + profile.gate_total if expected == "dense" else profile.fixed
        assert torch.equal(record.macs, torch.full((4,), float(target), dtype=torch.float64))


def test_training_mode_computes_every_block():
    model = aignet.create_model("aig_resnet20_cifar", shortcut="B").train()
    profile = profile_macs(model)
    x = torch.randn(8, 3, 32, 32)
    with FlopCounterMode(display=False) as counter:
        out = model(x)
    assert counter.get_total_flops() // 2 == 8 * (profile.dense + profile.gate_total)
    out.logits.sum().backward()
    assert all(g.fc1.weight.grad is not None for g in aignet.nn.gates.iter_gates(model))


def test_predictor_record_and_summary():
    model = warmed_model("aig_resnet20_cifar", 32)
    model.train()  # the predictor must not change the caller's model
    predictor = aignet.Predictor(model, mode="deterministic", threshold=0.5)
    logits, record = predictor(torch.randn(10, 3, 32, 32))
    assert model.training and logits.shape == (10, 10)
    summary = record.summary()
    assert summary["images"] == 10 and len(summary["layer_rates"]) == 9
    assert summary["executed_blocks_mean"] == pytest.approx(record.executed.sum().item() / 10)
    assert summary["macs_mean"] == pytest.approx(record.macs.mean().item())
    both = aignet.ExecutionRecord.cat([record, record])
    assert len(both) == 20 and both.summary()["macs_mean"] == pytest.approx(summary["macs_mean"])


@pytest.mark.parametrize("batch", [1, 7, 32])
def test_bf16_predictor_keeps_float32_gates_and_agrees_with_fp32(batch):
    from aignet.nn.gates import iter_gates

    model = warmed_model("aig_resnet20_cifar", 32, spread=0.5)
    x = torch.randn(batch, 3, 32, 32)
    fp32 = aignet.Predictor(model, channels_last=True)
    bf16 = aignet.Predictor(model, channels_last=True, precision="bf16")
    assert all(p.dtype == torch.float32 for g in iter_gates(bf16.model) for p in g.buffers())
    assert any(p.dtype == torch.bfloat16 for p in bf16.model.parameters())
    a, b = fp32(x), bf16(x)
    assert b.logits.dtype == torch.float32
    # bf16 features move a few gates that sit on the threshold; nearly all decisions agree.
    assert (a.record.executed == b.record.executed).float().mean() >= 0.9
    assert torch.allclose(a.logits, b.logits, atol=0.5, rtol=0.1)
    with pytest.raises(ValueError, match="unknown precision"):
        aignet.Predictor(model, precision="int4")


@pytest.mark.skipif(kernels.load() is None, reason="the C++ kernels did not build")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_compiled_fused_gate_decides_as_the_torch_ops(dtype, channels_last, monkeypatch):
    model = warmed_model("aig_resnet20_cifar", 32, shortcut="B")
    gate = next(iter(aignet.nn.gates.iter_gates(aignet.fuse(model))))
    x = torch.randn(64, 16, 8, 8).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        margins = gate.margin(x.float())
    # Half the images open, the threshold halfway between two margins (no ties to round).
    lower, upper = margins.sort().values[31:33].tolist()
    threshold = (lower + upper) / 2
    compiled = gate.decide(x, threshold)
    monkeypatch.setattr(kernels, "load", lambda: None)
    reference = gate.decide(x, threshold)
    assert compiled.dtype == torch.float32 and 0 < compiled.sum() < 64
    assert torch.equal(compiled, reference)
    assert torch.equal(gate.decide(x[:1], threshold), reference[:1])  # the numpy path


@pytest.mark.skipif(kernels.load() is None, reason="the C++ kernels did not build")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("identity", [True, False])
def test_compiled_row_kernels_match_the_reference_ops(dtype, channels_last, identity,
                                                      monkeypatch):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(7, 16, 5, 6).to(dtype).contiguous(memory_format=fmt)
    x[2, 0, 0, :3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    branch = torch.randn(4, 16, 5, 6).to(dtype).contiguous(memory_format=fmt)
    index = torch.tensor([0, 2, 3, 6])
    block = aignet.create_model("aig_resnet20_cifar").layer1[0]  # relu(shortcut + branch)

    def run():
        with torch.inference_mode():
            rows = select_rows(x, index)
            shortcut = x.clone()  # identity: the block writes into its own input
            out = shortcut if identity else shortcut.relu()
            return rows, merge_rows(block, out, index, shortcut, branch)

    with torch.inference_mode():
        assert executor._row_kernels(x) is not None
    compiled = run()
    monkeypatch.setattr(kernels, "usable", lambda t: None)
    reference = run()
    for got, want in zip(compiled, reference, strict=True):
        assert got.stride() == want.stride()
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
    closed = [1, 4, 5]
    torch.testing.assert_close(compiled[1][closed], x[closed] if identity else x[closed].relu(),
                               rtol=0, atol=0, equal_nan=True)


@pytest.mark.skipif(kernels.load() is None, reason="the C++ kernels did not build")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels,shape", [(8, (7, 7)), (16, (8, 8)), (64, (5, 6)), (24, (3, 5))])
@pytest.mark.parametrize("all_rows", [False, True])
def test_merge_sums_are_bitwise_the_gate_pooling(dtype, channels, shape, all_rows):
    # The compiled pass sums a block's output for the next gate while its merge writes it; the
    # gate must see the sums its own pooling would form (the same additions in the same order),
    # for every remainder of the map's area by the four partial sums.
    k = kernels.load()
    fmt = torch.channels_last
    x = (torch.randn(6, channels, *shape) * 100).to(dtype).contiguous(memory_format=fmt)
    index = None if all_rows else torch.tensor([0, 2, 5])
    branch = torch.randn(6 if all_rows else 3, channels, *shape).to(dtype)
    branch = (branch * 100).contiguous(memory_format=fmt)
    with torch.inference_mode():
        assert k.sums_mergeable(x) and not k.sums_mergeable(x.contiguous())
        reference = x.clone()
        k.scatter_merge_(reference, torch.arange(6) if all_rows else index, x, branch, True)
        out = x.clone()
        sums = k.merge_relu_rows_with_sums_(out, index, x, branch)
        pooled = k.gate_channel_sums(out)
    assert torch.equal(out, reference)
    written = list(range(6)) if all_rows else [0, 2, 5]
    assert torch.equal(sums[written], pooled[written])
    assert sums[[r for r in range(6) if r not in written]].isnan().all()
    torch.testing.assert_close(pooled, out.float().sum((2, 3)), rtol=1e-5, atol=1e-2)


@pytest.mark.skipif(kernels.load() is None, reason="the C++ kernels did not build")
@pytest.mark.parametrize("shortcut", ["A", "B"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_sparse_model_with_kernels_equals_the_reference_ops(shortcut, channels_last,
                                                            monkeypatch):
    fused = aignet.fuse(warmed_model("aig_resnet20_cifar", 32, shortcut=shortcut),
                        channels_last=channels_last)
    x = torch.randn(16, 3, 32, 32)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    compiled = _run(fused, x, "sparse", "deterministic", 0.5)
    monkeypatch.setattr(kernels, "usable", lambda t: None)
    reference = _run(fused, x, "sparse", "deterministic", 0.5)
    assert ((reference.gates == 0).any(0) & (reference.gates != 0).any(0)).any()
    assert torch.equal(compiled.logits, reference.logits)
    assert torch.equal(compiled.gates, reference.gates)
