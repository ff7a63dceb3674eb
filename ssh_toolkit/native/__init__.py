"""The native conversion route: MXNet checkpoint -> OpenVINO IR on the current OpenVINO, without Model Optimizer
and without MXNet (see docs/native.md)."""

from .translate import Preprocess, translate, translate_files

__all__ = ["Preprocess", "translate", "translate_files"]
