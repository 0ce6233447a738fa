"""Model families; importing them fills the registry."""

from aignet.models.resnet import ModelOutput, ResNet

__all__ = ["ModelOutput", "ResNet"]
