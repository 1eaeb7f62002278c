"""greenlm.measure: the price tag. Parameters, FLOPs, time, energy, CO2e and cost of anyone's code.

Imports nothing of greenlm but ``greenlm.common``; optional packages (codecarbon, nvidia-ml-py, zeus,
transformers) are imported only when a feature needs them. See docs/pricetag.md.
"""

from greenlm.measure.budget import EXIT_BUDGET, Budget, BudgetExceeded, Spend
from greenlm.measure.calc import price_by_hand
from greenlm.measure.command import CommandResult, measure_command
from greenlm.measure.emissions_csv import append_emissions_csv
from greenlm.measure.flops import FlopReport, count_flops
from greenlm.measure.intensity import Intensity, IntensitySeries, known_regions, lookup_intensity
from greenlm.measure.ledger import Ledger, default_ledger_location, default_ledger_path
from greenlm.measure.params import count_params
from greenlm.measure.pricetag import PriceTag, PriceTagRecord, PriceTagWarning, combine_records, format_record

__all__ = [
    "EXIT_BUDGET",
    "Budget",
    "BudgetExceeded",
    "CommandResult",
    "FlopReport",
    "Intensity",
    "IntensitySeries",
    "Ledger",
    "PriceTag",
    "PriceTagCallback",
    "PriceTagRecord",
    "PriceTagWarning",
    "Spend",
    "append_emissions_csv",
    "combine_records",
    "count_flops",
    "count_params",
    "default_ledger_location",
    "default_ledger_path",
    "format_record",
    "known_regions",
    "lookup_intensity",
    "measure_command",
    "price_by_hand",
]


def __getattr__(name):
    if name == "PriceTagCallback":  # needs transformers: import it only when asked for
        from greenlm.measure.hf_callback import PriceTagCallback

        return PriceTagCallback
    raise AttributeError(f"module 'greenlm.measure' has no attribute {name!r}")
