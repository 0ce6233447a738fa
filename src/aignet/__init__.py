"""aignet: Convolutional Networks with Adaptive Inference Graphs (ConvNet-AIG) in PyTorch."""

from aignet.engine.flops import MacProfile, count_macs, profile_macs
from aignet.engine.fuse import fuse
from aignet.engine.inference import Prediction, Predictor
from aignet.engine.recalibrate import recalibrate_bn
from aignet.engine.record import ExecutionRecord
from aignet.models import ModelOutput, ResNet
from aignet.models.pretrained import list_pretrained
from aignet.models.registry import (
    create_model,
    create_model_from_config,
    list_models,
    register_model,
)
from aignet.models.resnet_weights import load_resnet_weights
from aignet.nn.blocks import remove_gates, set_execution
from aignet.nn.gates import INFERENCE_MODES, TRAIN_MODES, Gate, GateBase, set_gate_mode
from aignet.nn.losses import AIGLoss, execution_rates, target_rate_loss
from aignet.nn.target_rates import PRESETS, resolve_target_rates
from aignet.training.checkpoint import load_model, load_safe, save_atomic

__version__ = "0.1.0"

__all__ = [
    "AIGLoss", "ExecutionRecord", "Gate", "GateBase", "INFERENCE_MODES", "MacProfile",
    "ModelOutput", "PRESETS", "Prediction", "Predictor", "ResNet", "TRAIN_MODES", "count_macs",
    "create_model", "create_model_from_config", "execution_rates", "fuse", "list_models",
    "list_pretrained", "load_model", "load_resnet_weights", "load_safe", "profile_macs",
    "recalibrate_bn", "register_model", "remove_gates", "resolve_target_rates", "save_atomic",
    "set_execution", "set_gate_mode", "target_rate_loss",
]
