"""HTML report of every backbone x probe run (never imports torch).

``build_report(artifacts, out)`` renders one self-contained HTML file;
``write_learning_curves(artifacts, out_dir)`` writes the few-shot curves for ``dvc plots``.
"""

from linprobe.reports.build import build_report, write_learning_curves

__all__ = ["build_report", "write_learning_curves"]
