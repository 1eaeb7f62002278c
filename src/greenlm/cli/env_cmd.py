"""``greenlm env``: versions, CPU/GPU, threads and readable energy counters."""

from __future__ import annotations

from typing import Annotated

import typer


def env_command(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Print what this machine is (paste it into a bug report)."""
    import json

    from greenlm.report.environment import environment_report

    report = environment_report()
    if as_json:
        print(json.dumps(report, indent=2))
        return
    print(f"greenlm {report['packages']['greenlm']}  python {report['python']}  {report['platform']}")
    cpu = report["cpu"]
    print(f"cpu: {cpu['model']}, {cpu['physical_cores']} physical / {cpu['logical_cores']} logical cores,"
          f" bf16 native: {'yes' if cpu['bf16_native'] else 'no'}; memory {report['memory_gib']} GiB")
    t = report["torch"]
    print(f"torch threads: {t['threads']} (inter-op {t['interop_threads']}); cuda: {t['cuda_available']} {t['gpus']}")
    for name, status in report["energy_counters"].items():
        detail = "readable" if status["readable"] else f"not readable ({status['reason']})"
        print(f"energy counter {name}: {detail}")
    if not any(s["readable"] for s in report["energy_counters"].values()):
        print("energy figures on this machine are estimates (no RAPL, no NVML)")
    print("packages: " + ", ".join(f"{k} {v}" for k, v in report["packages"].items() if v))
    for k, v in report["env_vars"].items():
        print(f"{k}={v}")


def register(app: typer.Typer) -> None:
    app.command("env")(env_command)
