"""``aignet attack``: robustness of AIG and dense checkpoints, honestly evaluated.

For each checkpoint and inference mode:

* FGSM and PGD accuracy for each epsilon, without and with a JPEG defence.
* For stochastic gates, the same attacks with expectation over transformation (EOT).
* Per-layer execution rates of one class group before and after FGSM.
* Two attacks on the gates: compute inflation (maximise executed blocks) and gate flipping
  (close the blocks the image ran on its clean input).

Results go to ``OUT/attack.json``, PNG curves and ``OUT/attack_report.html``. ``aignet analyze``
adds a robustness section to its report when ``attack.json`` sits in its output folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from aignet.analysis import plots
from aignet.analysis.attacks import (
    PixelModel,
    cross_entropy_objective,
    fgsm,
    flip_objective,
    inflation_objective,
    jpeg_roundtrip,
    pgd,
)
from aignet.analysis.groups import class_to_group, default_groups
from aignet.analysis.report import Figure, Section, table, write_report
from aignet.data import normalization
from aignet.engine.flops import profile_macs
from aignet.engine.record import ExecutionRecord
from aignet.nn.gates import evaluates_gates, set_gate_mode
from aignet.training.checkpoint import load_model, trained_config
from aignet.training.config import build_configured_data
from aignet.training.progress import Progress


@dataclass(frozen=True)
class AttackSettings:
    """What to run; the defaults keep a CPU run of one small model to minutes."""

    eps: tuple[float, ...] = (0.0, 0.005, 0.01, 0.02, 0.03)
    jpeg_quality: int = 75
    eot: int = 4
    pgd_steps: int = 5
    gate_eps: float | None = None  # epsilon of the rate/gate attacks (default: largest eps)
    modes: tuple[str, ...] = ("deterministic", "stochastic")
    limit: int = 500
    batch_size: int = 100
    group: str | None = None
    seed: int = 0


def _images(config, info: dict, data_dir: str | None, limit: int, batch: int):
    """The first ``limit`` test images in [0, 1] pixel space, with labels, in batches."""
    data = build_configured_data(config.data, data_dir, val_batch_size=batch, limit_val=limit,
                                 limit_train=1)
    mean, std = info.get("mean") or None, info.get("std") or None
    if mean is None:  # a checkpoint from before DataInfo carried its normalisation
        mean, std = normalization(config.data.name)
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    return [(x * s + m, y) for x, y in data.val], mean, std


class Evaluator:
    """Runs one model in one inference mode on [0, 1] images (sparse execution)."""

    def __init__(self, model, mean, std, mode: str, seed: int, input_size: int) -> None:
        self.model = model
        self.forward = PixelModel(model, mean, std).eval()
        self.mode, self.seed = mode, seed
        self.profile = profile_macs(model, input_size)

    def reseed(self) -> None:
        set_gate_mode(self.model, inference=self.mode,
                      generator=torch.Generator().manual_seed(self.seed))

    def predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            out = self.forward(x)
        return out.logits.argmax(1), out.gates

    def accuracy(self, batches) -> float:
        correct = total = 0
        for x, y in batches:
            pred, _ = self.predict(x)
            correct += int((pred == y).sum())
            total += len(y)
        return correct / total


def _attack_all(ev: Evaluator, batches, attack) -> list[tuple[Tensor, Tensor]]:
    return [(attack(x, y), y) for x, y in batches]


def _curves(ev: Evaluator, batches, s: AttackSettings, stochastic: bool) -> dict:
    gen = torch.Generator().manual_seed(s.seed)
    curves = {k: [] for k in ("fgsm", "fgsm_jpeg", "pgd", "pgd_jpeg", "fgsm_eot",
                              "fgsm_eot_jpeg", "pgd_eot")}
    eot = stochastic and s.eot > 1
    bar = Progress(len(s.eps) * (4 if eot else 2), f"attack ({ev.mode})")
    for eps in s.eps:
        runs = {"fgsm": lambda x, y, e=eps: fgsm(ev.forward, ev.model, x,
                                                 cross_entropy_objective(y), e),
                "pgd": lambda x, y, e=eps: pgd(ev.forward, ev.model, x,
                                               cross_entropy_objective(y), e, s.pgd_steps,
                                               generator=gen)}
        if eot:
            runs["fgsm_eot"] = lambda x, y, e=eps: fgsm(ev.forward, ev.model, x,
                                                        cross_entropy_objective(y), e, s.eot)
            runs["pgd_eot"] = lambda x, y, e=eps: pgd(ev.forward, ev.model, x,
                                                      cross_entropy_objective(y), e,
                                                      s.pgd_steps, samples=s.eot,
                                                      generator=gen)
        for name, attack in runs.items():
            ev.reseed()
            adversarial = _attack_all(ev, batches, attack)
            bar.update(bar.step + 1)
            curves[name].append(ev.accuracy(adversarial))
            if f"{name}_jpeg" in curves:
                jpeg = [(jpeg_roundtrip(x, s.jpeg_quality)[0], y) for x, y in adversarial]
                curves[f"{name}_jpeg"].append(ev.accuracy(jpeg))
    return {k: v for k, v in curves.items() if v}


def _rates_under_attack(ev: Evaluator, batches, s: AttackSettings, eps: float,
                        group_index: int, class_group: list[int]) -> dict:
    clean, adversarial = [], []
    for x, y in batches:
        ev.reseed()
        keep = torch.tensor(class_group)[y] == group_index
        if not keep.any():
            continue
        x_adv = fgsm(ev.forward, ev.model, x[keep], cross_entropy_objective(y[keep]), eps)
        clean.append(ev.predict(x[keep])[1])
        adversarial.append(ev.predict(x_adv)[1])
    if not clean:
        return {}
    before = (torch.cat(clean) != 0).float().mean(0)
    after = (torch.cat(adversarial) != 0).float().mean(0)
    return {"eps": eps, "before": before.tolist(), "after": after.tolist(),
            "mean_abs_change": float((after - before).abs().mean())}


def _gate_attacks(ev: Evaluator, batches, s: AttackSettings, eps: float) -> dict:
    """Compute inflation and gate flipping at ``eps``: accuracy, MACs, executed blocks.

    Both start from the clean image and keep each image's best iterate under the hard score
    (blocks executed; blocks still executed of those the clean image ran), so the reported
    effect is never weaker than no attack.
    """
    gated = [i for i, g in enumerate(ev.model.gated) if g]

    def ran(x: Tensor) -> Tensor:
        return (ev.predict(x)[1][:, gated] != 0).float()

    result = {}
    for name in ("clean", "inflation", "flip"):
        correct = total = 0
        gates = []
        for x, y in batches:
            ev.reseed()
            if name == "inflation":
                x = pgd(ev.forward, ev.model, x, inflation_objective(), eps, s.pgd_steps,
                        random_start=False, score=lambda z: ran(z).sum(1))
            elif name == "flip":
                needed = ran(x)
                x = pgd(ev.forward, ev.model, x, flip_objective(list(needed.T)), eps,
                        s.pgd_steps, random_start=False,
                        score=lambda z, n=needed: -(ran(z) * n).sum(1))
            ev.reseed()
            pred, g = ev.predict(x)
            correct += int((pred == y).sum())
            total += len(y)
            gates.append(g)
        record = ExecutionRecord.from_gates(torch.cat(gates), ev.profile,
                                            gates_evaluated=evaluates_gates(ev.mode))
        result[name] = {"accuracy": correct / total, "macs_mean": float(record.macs.mean()),
                        "executed_blocks_mean": float(record.executed_blocks.float().mean())}
    result["eps"] = eps
    result["macs_increase"] = result["inflation"]["macs_mean"] / result["clean"]["macs_mean"] - 1
    return result


def attack_checkpoints(checkpoints: list[str], out: str | Path, settings: AttackSettings,
                       data_dir: str | None = None, command: str = "") -> dict:
    """Run every experiment on every checkpoint; write JSON, figures and a report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for eps in settings.eps:
        if not 0 <= eps <= 1:
            raise ValueError(f"epsilon must be in [0, 1] (pixel scale), got {eps}")
    models = []
    for path in checkpoints:
        models += _attack_one(path, settings, data_dir)
    result = {"settings": settings.__dict__, "models": models,
              "verdict": verdict(models), "command": command}
    (out / "attack.json").write_text(json.dumps(result, indent=1))
    figures = attack_figures(result, out)
    write_report(out / "attack_report.html", "ConvNet-AIG robustness", command,
                 [attack_section(result, figures)])
    return result


def _attack_one(path: str, s: AttackSettings, data_dir: str | None) -> list[dict]:
    torch.manual_seed(s.seed)
    model = load_model(path)
    config = trained_config(model)
    info = model.pretrained_cfg
    batches, mean, std = _images(config, info, data_dir, s.limit, s.batch_size)
    gated = any(model.gated)
    groups = default_groups(config.data.name, info["classes"]) or {"all": info["classes"]}
    class_group = class_to_group(groups, info["classes"])
    group_names = list(groups)
    group = s.group or group_names[0]
    if group not in group_names:
        raise ValueError(f"unknown group {group!r}; this data set has {', '.join(group_names)}")
    eps = s.gate_eps if s.gate_eps is not None else max(s.eps)
    rows = []
    for mode in (s.modes if gated else ("deterministic",)):
        ev = Evaluator(model, mean, std, mode, s.seed, info["input_size"])
        row = {"checkpoint": path, "model": config.model.name, "gated": gated,
               "mode": mode if gated else "dense", "eps": list(s.eps),
               **_curves(ev, batches, s, stochastic=gated and mode == "stochastic")}
        if gated:
            row["rates"] = {"group": group, **_rates_under_attack(
                ev, batches, s, eps, group_names.index(group), class_group)}
            row["gate_attacks"] = _gate_attacks(ev, batches, s, eps)
        rows.append(row)
    return rows


def verdict(models: list[dict]) -> dict:
    """Does stochastic AIG beat the dense model under FGSM, with and without JPEG and EOT?"""
    dense = [m for m in models if not m["gated"]]
    stochastic = [m for m in models if m["gated"] and m["mode"] == "stochastic"]
    if not dense or not stochastic:
        return {"text": "Give an AIG and a dense checkpoint together to compare robustness."}
    d, a = dense[0], stochastic[0]
    attacked = [i for i, e in enumerate(a["eps"]) if e > 0]

    def advantage(key_aig: str, key_dense: str) -> float:
        return float(np.mean([a[key_aig][i] - d[key_dense][i] for i in attacked]))

    result = {"fgsm": advantage("fgsm", "fgsm"), "fgsm_jpeg": advantage("fgsm_jpeg", "fgsm_jpeg")}
    if "fgsm_eot" in a:
        result["fgsm_eot"] = advantage("fgsm_eot", "fgsm")
        result["fgsm_eot_jpeg"] = advantage("fgsm_eot_jpeg", "fgsm_jpeg")
    holds = result["fgsm"] > 0 and result["fgsm_jpeg"] > 0
    survives = result.get("fgsm_eot", 0) > 0 and result.get("fgsm_eot_jpeg", 0) > 0
    points = ", ".join(f"{k} {100 * v:+.1f}" for k, v in result.items())
    text = (f"Stochastic AIG ({a['model']}) vs dense ({d['model']}), mean accuracy difference "
            f"over the attacked epsilons, in points: {points}. The papers' claim (stochastic "
            f"AIG is more robust to FGSM, also with JPEG) "
            f"{'holds' if holds else 'does not hold'} here")
    if "fgsm_eot" in result:
        text += (" and its advantage " + ("survives" if survives else "does not survive") +
                 " an EOT attack that averages the gradient over gate samples")
    return {**result, "claim_holds": holds, "survives_eot": survives, "text": text + "."}


def attack_figures(result: dict, out: Path) -> dict:
    """Accuracy-vs-epsilon curves and before/after execution rates."""
    figs = {"attack_curves": plots.attack_curves(result["models"], out / "attack_curves.png")}
    rated = [m for m in result["models"] if m.get("rates", {}).get("before")]
    if rated:
        figs["attack_rates"] = plots.rates_before_after(rated, out / "attack_rates.png")
    return figs


def attack_section(result: dict, figs: dict) -> Section:
    """The robustness section of a report."""
    rows = []
    for m in result["models"]:
        label = f"{m['model']} ({m['mode']})"
        rows.append((label, "FGSM acc " + ", ".join(f"{100 * a:.1f}" for a in m["fgsm"]) +
                     " | +JPEG " + ", ".join(f"{100 * a:.1f}" for a in m["fgsm_jpeg"])))
        if "gate_attacks" in m:
            g = m["gate_attacks"]
            rows.append((f"{label} gate attacks (eps {g['eps']})",
                         f"inflation: MACs +{100 * g['macs_increase']:.1f}%, accuracy "
                         f"{100 * g['inflation']['accuracy']:.1f}%; flip: MACs "
                         f"{g['flip']['macs_mean'] / 1e6:.2f}M, accuracy "
                         f"{100 * g['flip']['accuracy']:.1f}% (clean "
                         f"{100 * g['clean']['accuracy']:.1f}%)"))
        if m.get("rates", {}).get("before"):
            rows.append((f"{label} rates under FGSM ({m['rates']['group']})",
                         f"mean absolute change {m['rates']['mean_abs_change']:.3f}"))
    eps = ", ".join(str(e) for e in result["settings"]["eps"])
    body = (f"<p>{result['verdict']['text']}</p><p>Epsilons (pixel scale): {eps}.</p>" +
            table(rows, ("model", "result")))
    captions = {"attack_curves": "Top-1 accuracy against epsilon: FGSM, FGSM + JPEG, PGD and "
                                 "EOT variants.",
                "attack_rates": "Per-layer execution rates of one class group before and "
                                "after FGSM."}
    titles = {"attack_curves": "Accuracy under attack",
              "attack_rates": "Execution rates under attack"}
    return Section("Robustness", body, [Figure(titles[k], v, captions[k])
                                        for k, v in figs.items()])
