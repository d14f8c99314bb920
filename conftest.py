"""pytest configuration shared by the unit tests and the notebook checks (nbval).

Quick mode is on unless the caller set SSLEDU_QUICK, nothing touches the network,
and figures render off-screen. The notebook kernels inherit this environment.
"""

import os

os.environ.setdefault("SSLEDU_QUICK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(var, "1")
