"""torch.hub entry points: every registered aignet model, with shipped weights on request.

    model = torch.hub.load("path/to/aignet", "aig_resnet56_cifar", source="local",
                           pretrained="cifar10")

Nothing is downloaded: ``pretrained`` names weights shipped inside the package.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

import aignet  # noqa: E402

dependencies = ["torch", "numpy", "yaml", "safetensors", "pydantic"]


def _entry(name):
    def build(pretrained=None, **kwargs):
        return aignet.create_model(name, pretrained=pretrained, **kwargs)

    build.__name__ = name
    build.__doc__ = f"aignet {name}; pretrained: a tag of shipped weights (e.g. 'cifar10')."
    return build


for _name in aignet.list_models():
    globals()[_name] = _entry(_name)
