"""Reports: comparison tables, plots, model cards, expected max performance, the environment dump.

``greenlm report RUN_DIR`` (``greenlm.report.regenerate.generate_report``) writes them for a run folder.
"""

from greenlm.report.emp import emp_curve, expected_max_performance, expected_max_performance_std
from greenlm.report.pareto import pareto_front

__all__ = ["emp_curve", "expected_max_performance", "expected_max_performance_std", "pareto_front"]
