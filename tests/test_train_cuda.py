"""The GPU path of fit: bf16 autocast, pinned memory, non-blocking copies, a GPU checkpoint on the CPU."""

import math

import pytest
import torch

from cycle_task import QUIET, V, clm, cycle_blocks, nano
from ssledu import train

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_fit_in_bf16_on_the_gpu_learns():
    model = nano()
    h = train.fit(model, cycle_blocks(64, 32), collate_fn=clm, batch_size=16, lr=3e-3, max_steps=60,
                  warmup_steps=0, device="cuda", precision="bf16", **QUIET)
    assert abs(h.steps[0]["loss"] - math.log(V)) < 0.2 and h.final_loss < 0.5
    assert len(h.steps) == 60 and all(math.isfinite(s["grad_norm"]) for s in h.steps)
    assert next(model.parameters()).device.type == "cuda"
    val = train.evaluate(model, cycle_blocks(16), collate_fn=clm, batch_size=8, device="cuda")
    assert val == train.evaluate(model, cycle_blocks(16), collate_fn=clm, batch_size=8, device="cuda")
    assert val < 0.5


def test_a_nan_on_the_gpu_names_its_step():
    calls = {"n": 0}

    def loss_fn(model, batch):
        calls["n"] += 1
        loss = model(**batch).loss
        return loss * float("nan") if calls["n"] == 5 else loss

    with pytest.raises(FloatingPointError, match="at step 5"):
        train.fit(nano(), cycle_blocks(64, 32), collate_fn=clm, batch_size=16, max_steps=20, device="cuda",
                  loss_fn=loss_fn, **QUIET)


def test_a_checkpoint_saved_on_the_gpu_resumes_on_the_cpu(tmp_path):
    kw = dict(collate_fn=clm, batch_size=16, lr=3e-3, seed=0, **QUIET)

    def stop_at_4(state):
        if state.step == 4:
            raise KeyboardInterrupt

    train.fit(nano(), cycle_blocks(64, 32), max_steps=8, device="cuda", checkpoint_dir=tmp_path / "gpu",
              callbacks=[stop_at_4], **kw)
    model = nano()
    h = train.fit(model, cycle_blocks(64, 32), max_steps=8, device="cpu", resume_from=tmp_path / "gpu", **kw)
    assert [s["step"] for s in h.steps] == list(range(1, 9))
    assert next(model.parameters()).device.type == "cpu" and math.isfinite(h.final_loss)
    assert h.final_loss < h.steps[0]["loss"]
