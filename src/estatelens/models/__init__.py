"""Model registry: `create_model(name, num_classes, pretrained)` and `list_models()`."""
from .registry import (Classifier, ModelSpec, Preprocessing, create_model, get_spec, list_models,
                       register)

__all__ = ["Classifier", "ModelSpec", "Preprocessing", "create_model", "get_spec", "list_models", "register"]
