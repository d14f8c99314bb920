"""Pretext tasks as pure, seeded data transforms: token ids -> model inputs + labels.

One module per family: ``mlm`` (BERT), ``clm`` (GPT), ``prefix`` (UniLM),
and later ``denoise``, ``contrastive``, ``multimodal``. Import the module you
need, e.g. ``from ssledu.objectives import mlm``.
"""
