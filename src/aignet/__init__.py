"""aignet: Convolutional Networks with Adaptive Inference Graphs (ConvNet-AIG) in PyTorch."""

from aignet.blocks import set_execution
from aignet.checkpoint import load_resnet_weights, load_safe, save_atomic
from aignet.flops import MacProfile, count_macs, profile_macs
from aignet.fuse import fuse
from aignet.gates import INFERENCE_MODES, TRAIN_MODES, Gate, GateBase, set_gate_mode
from aignet.inference import Prediction, Predictor
from aignet.losses import AIGLoss, execution_rates, target_rate_loss
from aignet.models import ModelOutput, ResNet
from aignet.record import ExecutionRecord
from aignet.registry import create_model, list_models, register_model
from aignet.target_rates import PRESETS, resolve_target_rates

__version__ = "0.1.0"

__all__ = [
    "AIGLoss", "ExecutionRecord", "Gate", "GateBase", "INFERENCE_MODES", "MacProfile",
    "ModelOutput", "PRESETS", "Prediction", "Predictor", "ResNet", "TRAIN_MODES", "count_macs",
    "create_model", "execution_rates", "fuse", "list_models", "load_resnet_weights", "load_safe",
    "profile_macs", "register_model", "resolve_target_rates", "save_atomic", "set_execution",
    "set_gate_mode", "target_rate_loss",
]
