"""linprobe.models must stay importable without torch (the report and CI read its outputs)."""

import subprocess
import sys


def test_models_does_not_import_torch():
    code = ("import sys, linprobe.models, linprobe.models.train, linprobe.models.compare; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
