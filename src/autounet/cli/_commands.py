"""The list of subcommands, in the order ``autounet -h`` shows them.

Each module has ``register(subparsers, parent)`` which adds its parser and sets ``handler(args, paths)``.
"""

from __future__ import annotations

from autounet.cli import (
    convert,
    deploy,
    ensemble,
    evaluate,
    example,
    export_model,
    find_best,
    fingerprint,
    install_model,
    plan,
    plan_and_preprocess,
    predict,
    preprocess,
    seg_to_boxes,
    train,
    verify,
)

__all__ = ["REGISTRARS"]

REGISTRARS = (
    example.register,
    verify.register,
    convert.register,
    fingerprint.register,
    plan.register,
    preprocess.register,
    plan_and_preprocess.register,
    train.register,
    predict.register,
    evaluate.register,
    seg_to_boxes.register,
    ensemble.register,
    find_best.register,
    export_model.register,
    deploy.register,
    install_model.register,
)
