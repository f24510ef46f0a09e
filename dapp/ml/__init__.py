"""Deterministic ML core: every number that decides an output is an integer.

Modules: ``arch`` (architecture spec), ``model_format`` (safetensors int32 models and datasets),
``fixedpoint`` (float <-> fixed point for the PyTorch side), ``inference`` (int64 inference),
``aggregation`` (robust rules behind one ``Strategy`` interface), ``randomness`` (keccak stream),
``contribution`` (Shapley / leave-one-out), ``rewards`` (integer wei split), ``hparams``.
"""
