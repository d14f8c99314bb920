"""Pretext tasks as pure, seeded data transforms: token ids -> model inputs + labels.

One module per family: ``mlm`` (BERT), ``clm`` (GPT), ``prefix`` (UniLM),
``contrastive`` (SimCLR, SimCSE, MoCo), ``denoise`` (BART, T5, ELECTRA), and later
``multimodal``.
Import the module you need, e.g. ``from ssledu.objectives import mlm``.
"""
