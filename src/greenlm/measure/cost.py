"""Money: price per hour of the hardware x wall time.

The user gives the price (``usd_per_hour``), or names an instance from the small table below. The
table holds on-demand Linux list prices in one US region, as the providers published them; cloud
prices change and differ by region, so a figure for a paper should come from the user's own bill.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from greenlm.common import GreenlmError
from greenlm.measure.units import S_PER_H, check_non_negative

PRICES_AS_OF = "2024-06"

# name -> (USD per hour, what it is, where listed). On-demand, Linux, no discounts.
INSTANCE_USD_PER_HOUR = {
    "aws:p3.2xlarge": (3.06, "1x V100 16 GB, 8 vCPU, us-east-1", "https://aws.amazon.com/ec2/instance-types/p3/"),
    "aws:g4dn.xlarge": (0.526, "1x T4, 4 vCPU, us-east-1", "https://aws.amazon.com/ec2/instance-types/g4/"),
    "aws:g5.xlarge": (1.006, "1x A10G, 4 vCPU, us-east-1", "https://aws.amazon.com/ec2/instance-types/g5/"),
    "aws:c5.2xlarge": (0.34, "8 vCPU (CPU only), us-east-1", "https://aws.amazon.com/ec2/pricing/on-demand/"),
    "gcp:a2-highgpu-1g": (3.673385, "1x A100 40 GB, 12 vCPU, us-central1", "https://cloud.google.com/compute/gpus-pricing"),
    "gcp:n1-standard-8": (0.379998, "8 vCPU (CPU only), us-central1", "https://cloud.google.com/compute/vm-instance-pricing"),
    "azure:NC6s_v3": (3.06, "1x V100 16 GB, 6 vCPU, East US", "https://azure.microsoft.com/pricing/details/virtual-machines/linux/"),
}


@dataclass(frozen=True)
class Price:
    usd_per_hour: float
    source: str


def resolve_price(usd_per_hour: float | None = None, instance: str | None = None) -> Price | None:
    """The hourly price to charge, with its source; None when the user gave neither."""
    if usd_per_hour is not None and instance is not None:
        raise GreenlmError("give a price per hour or an instance name, not both")
    if usd_per_hour is not None:
        return Price(check_non_negative(usd_per_hour, "price per hour (USD)"), "user: usd_per_hour")
    if instance is None:
        return None
    key = {name.lower(): name for name in INSTANCE_USD_PER_HOUR}.get(instance.strip().lower())
    if key is None:
        close = difflib.get_close_matches(instance.strip(), list(INSTANCE_USD_PER_HOUR), n=3, cutoff=0.5)
        hint = f"closest: {', '.join(close)}" if close else f"known: {', '.join(INSTANCE_USD_PER_HOUR)}"
        raise GreenlmError(f"unknown instance {instance!r} ({hint}); or pass a price per hour")
    price, what, url = INSTANCE_USD_PER_HOUR[key]
    return Price(price, f"greenlm table: {key} ({what}), on-demand list price as of {PRICES_AS_OF}, {url}")


def cost_usd(price: Price | None, wall_s: float) -> float | None:
    return None if price is None else price.usd_per_hour * wall_s / S_PER_H
