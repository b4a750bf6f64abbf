import subprocess
import sys

CORE_MODULES = ["remdinet", "remdinet.config", "remdinet.fixes", "remdinet.model", "remdinet.losses",
                "remdinet.metrics", "remdinet.data", "remdinet.train", "remdinet.checkpoint",
                "remdinet.evaluate", "remdinet.diagnostics"]


def test_core_library_imports_without_the_experiment_layer_packages():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in CORE_MODULES) +
            "print(sorted(m for m in ('mlflow', 'optuna', 'typer', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
