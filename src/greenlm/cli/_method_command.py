"""One shape for every method's sub-command: ``greenlm <method> MODEL --out DIR [settings]``.

The settings are generated from the method's config dataclass (``_config_options``); the command loads
the task, runs the method through the stage shell (``greenlm.stage.run_stage``: resume, reuse, lock,
price tag, atomic folder) and hands the result to the sub-command's own ``show`` for printing.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import typer

from greenlm.cli._common import (ClockSpeedOpt, DropOpt, GridOpt, GridRegionOpt, JobDurationOpt, LabelFieldOpt,
                                 EvalSplitOpt, LabelsOpt, MaxCo2eOpt, MaxKwhOpt, MaxPauseOpt, MaxUsdOpt, NowOpt,
                                 OnEmptyOpt, PauseAboveOpt, PueOpt, RegionOpt, ReportToOpt, RunWithinOpt, TaskOpt,
                                 TextFieldsOpt, UsdPerHourOpt, ValidationOpt, budget_watch, carbon_clock, err,
                                 load_task_from_options, pause_policy, print_json, tracking_spec, validation_note)
from greenlm.cli._config_options import config_from_options, config_parameters

# Options every method command has besides its settings (names that are not config fields).
BUDGET_OPTIONS = ("max_kwh", "max_co2e_kg", "max_usd")
PAUSE_OPTIONS = ("pause_above", "run_within", "job_duration", "grid", "grid_region", "max_pause", "now", "clock_speed")
COMMON_OPTIONS = ("out", "task", "text_fields", "label_field", "labels", "on_empty", "eval_split",
                  "validation_fraction", "drop",
                  "region", "pue", "usd_per_hour", "progress", "json_out", *BUDGET_OPTIONS, *PAUSE_OPTIONS, "report_to")


def _common_parameters(out_help: str) -> list[inspect.Parameter]:
    kw = inspect.Parameter.KEYWORD_ONLY
    return [
        inspect.Parameter("out", kw, annotation=Annotated[Path, typer.Option("--out", "-o", help=out_help)]),
        inspect.Parameter("task", kw, default="sst2", annotation=TaskOpt),
        inspect.Parameter("text_fields", kw, default=None, annotation=TextFieldsOpt),
        inspect.Parameter("label_field", kw, default=None, annotation=LabelFieldOpt),
        inspect.Parameter("labels", kw, default=None, annotation=LabelsOpt),
        inspect.Parameter("on_empty", kw, default="skip", annotation=OnEmptyOpt),
        inspect.Parameter("eval_split", kw, default=None, annotation=EvalSplitOpt),
        inspect.Parameter("validation_fraction", kw, default=0.1, annotation=ValidationOpt),
        inspect.Parameter("drop", kw, default=None, annotation=DropOpt),
        inspect.Parameter("region", kw, default=None, annotation=RegionOpt),
        inspect.Parameter("pue", kw, default=None, annotation=PueOpt),
        inspect.Parameter("usd_per_hour", kw, default=None, annotation=UsdPerHourOpt),
        inspect.Parameter("progress", kw, default=True,
                          annotation=Annotated[bool, typer.Option(help="Show progress bars.")]),
        inspect.Parameter("json_out", kw, default=False,
                          annotation=Annotated[bool, typer.Option("--json", help="Print the full metrics as JSON.")]),
        inspect.Parameter("max_kwh", kw, default=None, annotation=MaxKwhOpt),
        inspect.Parameter("max_co2e_kg", kw, default=None, annotation=MaxCo2eOpt),
        inspect.Parameter("max_usd", kw, default=None, annotation=MaxUsdOpt),
        inspect.Parameter("pause_above", kw, default=None, annotation=PauseAboveOpt),
        inspect.Parameter("run_within", kw, default=None, annotation=RunWithinOpt),
        inspect.Parameter("job_duration", kw, default=None, annotation=JobDurationOpt),
        inspect.Parameter("grid", kw, default=None, annotation=GridOpt),
        inspect.Parameter("grid_region", kw, default=None, annotation=GridRegionOpt),
        inspect.Parameter("max_pause", kw, default=None, annotation=MaxPauseOpt),
        inspect.Parameter("now", kw, default=None, annotation=NowOpt),
        inspect.Parameter("clock_speed", kw, default=None, annotation=ClockSpeedOpt),
        inspect.Parameter("report_to", kw, default="none", annotation=ReportToOpt),
    ]


def method_command(method: str, *, source: inspect.Parameter, show: Callable, out_help: str,
                   aliases: dict[str, tuple[str, ...]] | None = None, extra: tuple[inspect.Parameter, ...] = (),
                   teacher_option: str | None = None) -> Callable:
    """A Typer command function for ``method``.

    ``source``: the parameter naming the input model (an argument, or ``--model``). ``show(result,
    config, task)`` prints the outcome. ``extra``: command-only options (not settings); ``teacher_option``
    names the one among them that gives the fine-tuned teacher's folder.
    """
    from greenlm.stage import get_method

    config_class = get_method(method).config_type()
    settings = config_parameters(config_class, aliases=aliases)
    setting_names = [p.name for p in settings]

    def command(**values) -> None:
        from greenlm.stage import PriceSettings, run_stage
        from greenlm.stage.shell import is_main_process
        from greenlm.train.budget import budgeting
        from greenlm.train.pause import pausing
        from greenlm.train.trackers import tracking

        price = PriceSettings(region=values["region"], pue=values["pue"], usd_per_hour=values["usd_per_hour"])
        check = price.price_tag("check", ledger=False)  # a bad region or PUE fails here, before any work
        watch = budget_watch(values["max_kwh"], values["max_co2e_kg"], values["max_usd"], check)  # so does a bad budget
        policy = pause_policy(values["pause_above"], values["grid"], values["grid_region"], values["max_pause"],
                              carbon_clock(values["now"], values["clock_speed"]), run_within=values["run_within"],
                              job_duration=values["job_duration"])  # a bad pause option too: one line, no notes
        config = config_from_options(config_class, {k: values[k] for k in setting_names})
        spec = tracking_spec(values["report_to"], Path(values["out"]).parent / "tracking")  # missing package: stop now
        task = load_task_from_options(values["task"], values["text_fields"], values["label_field"], values["labels"],
                                      values["on_empty"], validation_fraction=values["validation_fraction"],
                                      drop=values["drop"], eval_split=values["eval_split"])
        teacher = values.get(teacher_option) if teacher_option else None
        with pausing(policy), budgeting(watch), tracking(spec):
            result = run_stage(method, values[source.name], task, config, values["out"], teacher_dir=teacher,
                               name=method, price=price, progress=values["progress"],
                               on_note=lambda note: err(f"note: {note}"), command=" ".join(["greenlm", *sys.argv[1:]]))
        if not is_main_process():
            return  # the other processes of a launched group stay quiet
        if result.reused:
            err(f"{values['out']} already holds this finished run; nothing to do (delete it to run again)")
        else:
            validation_note(task)
        if values["json_out"]:
            print_json(result.metrics)
            return
        show(result, config, task)

    command_only = [source.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD), *_common_parameters(out_help),
                    *extra]
    command.__signature__ = inspect.Signature([*command_only, *settings])  # what Typer reads
    command.__name__ = f"{method}_command"
    command.setting_names = tuple(setting_names)  # for the test that options and config fields agree
    command.command_only = tuple(p.name for p in command_only)
    return command


def model_argument(help_text: str) -> inspect.Parameter:
    return inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                             annotation=Annotated[str, typer.Argument(help=help_text, show_default=False, metavar="MODEL")])


def optional_path_option(name: str, flag: str, help_text: str) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[Optional[Path], typer.Option(flag, help=help_text)])
