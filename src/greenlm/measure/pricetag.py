"""``PriceTag``: wall time, CPU time, energy by component, CO2e, cost and FLOPs of a block of code.

    with PriceTag("finetune", region="USA", pue=1.1) as tag:
        train()
        tag.add_flops(n)
    tag.record.to_dict()

Also a decorator (``@PriceTag("eval")``) and, nested, a phase: a tag opened while another is open
in the same thread/task becomes a phase of it, reads the same counters at its edges, and appears in
``record.phases``; the parent keeps its own total, and ``unphased_*`` says what no phase covered, so
phases plus the unphased rest equal the total exactly.

Every figure names its source; a figure that cannot be had is ``None`` with the reason in
``record.reasons``. Energy is the machine's own (``energy_kwh_hardware``) times the PUE
(``energy_kwh``); CO2e is ``energy_kwh`` times the carbon intensity.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import os
import uuid
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone

from greenlm.common import GreenlmError
from greenlm.common.optional import require
from greenlm.measure import cost as cost_mod
from greenlm.measure import energy as energy_mod
from greenlm.measure import settings as settings_mod
from greenlm.measure.distributed import Launch, launcher_tree
from greenlm.measure.hardware import machine_summary
from greenlm.measure.intensity import IntensitySeries, describe_missing, lookup_intensity, user_intensity
from greenlm.measure.units import DEFAULT_PUE, J_PER_KWH, PUE_WARNING, check_count, check_positive, check_pue

COMPONENTS = ("cpu", "gpu", "ram")
BACKENDS = ("auto", "estimate", "codecarbon", "zeus")

_active: contextvars.ContextVar["PriceTag | None"] = contextvars.ContextVar("greenlm_pricetag", default=None)
_warned: set[str] = set()


class PriceTagWarning(UserWarning):
    """A price tag figure is an estimate, a default, or could not be written."""


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, PriceTagWarning, stacklevel=3)


@dataclass
class PriceTagRecord:
    """What one tagged window cost. Units are in the names; sources beside every figure."""

    id: str
    name: str
    project: str | None
    stage: str | None
    status: str  # "ok" or "error: <exception type>"
    started_at_utc: str
    ended_at_utc: str
    wall_s: float
    cpu_s: float
    energy_kwh: float | None  # facility energy = hardware energy x PUE
    energy_kwh_hardware: float | None
    energy_kwh_by_component: dict  # cpu / gpu / ram, hardware (before PUE); None = not measured
    energy_source: str  # e.g. "nvml+rapl", "estimate:tdp-utilisation+estimate:ram-per-gb", "unavailable"
    energy_source_by_component: dict
    energy_details: dict  # TDP and its source, RAM model, GPUs, sampling interval...
    pue: float
    pue_source: str  # "default" | "user" | "parent" | "setting: GREENLM_PUE" or "setting: <settings file>"
    co2e_kg: float | None
    intensity_g_per_kwh: float | None  # energy-weighted over the window for a time series
    intensity_source: str | None
    intensity_region: str | None
    intensity_year: int | None
    intensity_kind: str | None  # country | us-state | ... | time-series | user
    intensity_missing_hours_utc: list
    cost_usd: float | None
    usd_per_hour: float | None
    cost_source: str | None
    flops: float | None  # FLOPs added with add_flops / add_model_flops, phases included
    phases: list = field(default_factory=list)  # PriceTagRecord of each phase, in order
    by_hour: list = field(default_factory=list)  # per clock hour (UTC): hour_utc, energy_kwh, intensity_g_per_kwh, co2e_kg
    unphased_wall_s: float | None = None
    unphased_energy_kwh: float | None = None
    unphased_co2e_kg: float | None = None
    reasons: dict = field(default_factory=dict)  # figure -> why it is None
    warnings: list = field(default_factory=list)
    machine: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    # under accelerate launch / torchrun: world_size, rank, local_rank, node_rank, local_processes, nodes,
    # counted_by, counted, scope (greenlm.measure.distributed); None for a process on its own
    distributed: dict | None = None

    def to_dict(self) -> dict:
        """JSON-ready (phases as dicts too)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PriceTagRecord":
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["phases"] = [cls.from_dict(p) for p in data.get("phases", [])]
        return cls(**kwargs)

    def summary(self) -> str:
        """A few human lines, for a terminal."""
        return format_record(self)

    def per_1000_examples(self, examples: int) -> dict:
        """Wall time, energy, CO2e and cost per 1,000 examples, for a tag around ``examples`` examples
        (e.g. an inference pass): ``{"wall_s_per_1000_examples", "energy_kwh_per_1000_examples", ...}``."""
        examples = check_count(examples, "examples")
        scale = 1000.0 / examples

        def per(value):
            return None if value is None else value * scale

        return {
            "examples": examples,
            "wall_s_per_1000_examples": per(self.wall_s),
            "energy_kwh_per_1000_examples": per(self.energy_kwh),
            "co2e_kg_per_1000_examples": per(self.co2e_kg),
            "cost_usd_per_1000_examples": per(self.cost_usd),
            "energy_source": self.energy_source,
        }


class PriceTag:
    """Measure a block of code: a context manager, a decorator, or ``start()`` / ``stop()``.

    Arguments (all optional, keyword-only after ``name``):
        region: carbon-intensity region (``USA``, ``USA/CA``, ``FRA``, ``SE3``, ``gcp:us-central1``...),
            or with ``intensity_csv`` a region of that hourly series (e.g. ``CISO``).
        intensity_g_per_kwh: a fixed intensity instead of a region.
        intensity_csv: hourly series ``timestamp_utc,region,gco2_per_kwh`` (a path), or a loaded series (an
            ``IntensitySeries``, or a ``grid_series.GridSeries`` of any format greenlm reads); needs ``region``.
        pue: data-centre PUE (>= 1). Default 1.0, with a warning.
        Region, PUE and price not given here come, for a top-level tag, from ``GREENLM_REGION`` / ``GREENLM_PUE`` /
        ``GREENLM_USD_PER_HOUR`` or a settings file (``greenlm.measure.settings``), and the record says which.
        usd_per_hour / instance: price of the hardware per hour, or an instance of ``cost.INSTANCE_USD_PER_HOUR``.
        project, stage, meta: labels kept in the record (and the ledger).
        ledger: True (the default ledger, the default), a ``Ledger``, or False: where the finished record
            is appended. Only top-level tags are appended; a phase is part of its parent's record.
        backend: "auto" (NVML / RAPL / estimates), "estimate" (no counters), "codecarbon", "zeus" (Zeus's monitor
            for the GPUs and RAPL zones it reads, greenlm's meters for the rest).
        cpu_tdp_w: TDP for the CPU estimate, overriding the shipped CPU table (from CodeCarbon).
        sample_interval_s: sampling period of the polled figures (RAM, GPU power without counters).
        clock: a zero-argument callable giving Unix seconds, read for wall time and clock hours instead of the
            system clock: a simulated clock (``greenlm.schedule.wait.ScaledClock.now``) prices a time-compressed
            demonstration on the hours it simulates. Estimates that integrate a power over time (the RAM model,
            GPU power polling) integrate over the clock's time, so a simulated pause is charged the hours it
            simulates; energy counters (RAPL, NVML totals) and the CPU estimate (CPU seconds) read what really ran.
    The record's ``by_hour`` splits energy (and, with an intensity, CO2e) by UTC clock hour.
    Under ``accelerate launch`` / ``torchrun`` a top-level tag prices its machine only on the node's local main
    process (``LOCAL_RANK`` 0, over the launcher's process tree); other processes' tags measure but are not
    appended to the ledger; ``record.distributed`` says which (greenlm.measure.distributed).
    A phase inherits region, intensity, PUE, price and labels from its parent unless given.
    """

    def __init__(
        self,
        name: str = "run",
        *,
        region: str | None = None,
        pue: float | None = None,
        usd_per_hour: float | None = None,
        instance: str | None = None,
        intensity_g_per_kwh: float | None = None,
        intensity_csv: str | os.PathLike | None = None,
        project: str | None = None,
        stage: str | None = None,
        ledger=True,
        backend: str = "auto",
        cpu_tdp_w: float | None = None,
        sample_interval_s: float = energy_mod.DEFAULT_INTERVAL_S,
        gpu_indices: list[int] | None = None,
        meta: dict | None = None,
        clock=None,
        _process_tree=None,
        _nvml=None,
        _powercap_root=None,
        _setup=None,
    ):
        if not isinstance(name, str) or not name.strip():
            raise GreenlmError("a price tag needs a non-empty name, e.g. PriceTag('finetune')")
        if backend not in BACKENDS:
            raise GreenlmError(f"unknown energy backend {backend!r}; use one of: {', '.join(BACKENDS)}")
        if backend == "zeus":
            require("zeus", "the zeus energy backend")  # before any work: one line naming the package
        self.name = name
        self._given = dict(
            region=region,
            pue=pue,
            usd_per_hour=usd_per_hour,
            instance=instance,
            intensity_g_per_kwh=intensity_g_per_kwh,
            intensity_csv=intensity_csv,
            project=project,
            stage=stage,
        )
        self._ledger = ledger
        self._backend = backend
        self._cpu_tdp_w = cpu_tdp_w
        self._interval_s = check_positive(sample_interval_s, "sample interval (s)")
        self._gpu_indices = gpu_indices
        self._meta = dict(meta or {})
        if clock is not None and not callable(clock):
            raise GreenlmError("a price tag's clock is a callable giving Unix seconds (e.g. time.time)")
        self._clock = clock
        # test seams: a process tree, an NVML module, a powercap folder, ready meters
        self._tree, self._nvml, self._powercap_root = _process_tree, _nvml, _powercap_root
        self._setup = _setup
        # validate what can be validated before any work starts
        self._pue = check_pue(pue) if pue is not None else None
        self._pue_source = "user"
        self._price = cost_mod.resolve_price(usd_per_hour, instance)
        self._intensity, self._series = _resolve_intensity(region, intensity_g_per_kwh, intensity_csv)
        self._settings = _machine_settings(self._given)  # applied at start, to a top-level tag only
        self._flops = 0.0
        self._flops_given = False
        self._phases: list[PriceTagRecord] = []
        self._parent: PriceTag | None = None
        self._session: energy_mod.EnergySession | None = None
        self._start = None
        self._token = None
        self._record: PriceTagRecord | None = None
        self._distributed: dict | None = None

    # ---- use --------------------------------------------------------------------------------------

    def __enter__(self) -> "PriceTag":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.stop(status="ok" if exc_type is None else f"error: {exc_type.__name__}")
        return False

    def __call__(self, func):
        """Use as a decorator: each call of ``func`` gets a fresh tag with these settings."""

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            tag = self._fresh()
            with tag:
                result = func(*args, **kwargs)
            wrapper.pricetag_record = tag.record
            self._record = tag.record
            return result

        wrapper.pricetag_record = None
        return wrapper

    def _fresh(self) -> "PriceTag":
        clone = PriceTag.__new__(PriceTag)
        clone.__dict__.update(self.__dict__)
        clone._given, clone._meta = dict(self._given), dict(self._meta)  # a phase's inheritance must not leak back
        clone._flops, clone._flops_given, clone._phases = 0.0, False, []
        clone._parent = clone._session = clone._start = clone._token = clone._record = None
        clone._distributed = None
        return clone

    @property
    def record(self) -> PriceTagRecord:
        if self._record is None:
            raise RuntimeError("the price tag record is ready once the tagged block has ended")
        return self._record

    @property
    def running(self) -> bool:
        return self._start is not None and self._record is None

    def add_flops(self, flops: float) -> None:
        """Count ``flops`` floating-point operations to this window (and so to its parents)."""
        if isinstance(flops, bool) or not isinstance(flops, (int, float)) or flops < 0:
            raise GreenlmError(f"FLOPs must be a number >= 0, got {flops!r}")
        self._flops += float(flops)
        self._flops_given = True

    def add_model_flops(self, model_or_config, *, seq_len: int, examples: int, train: bool = False,
                        convention: str = "matmul") -> float:
        """Add the FLOPs of ``examples`` examples of ``seq_len`` tokens through a model (forward, or
        forward + backward when ``train``); returns what was added."""
        from greenlm.measure.flops import count_flops

        examples = check_count(examples, "examples", minimum=0)
        report = count_flops(model_or_config, seq_len, convention=convention, pretraining=None,
                             train_steps=1 if train else None, batch_size=1 if train else None)
        per_example = report.train_flops_per_example if train else report.infer_flops_per_example
        self.add_flops(per_example * examples)
        return per_example * examples

    # ---- start / stop -----------------------------------------------------------------------------

    def start(self) -> "PriceTag":
        if self._start is not None:
            raise RuntimeError(f"price tag {self.name!r} was already started; use a new PriceTag")
        parent = _active.get()
        if parent is not None and parent.running:
            self._parent = parent
            self._session = parent._session
            self._inherit(parent)
            self._start = self._session.snapshot()
        else:
            tree = self._tree
            launch = Launch.from_env()
            if launch.launched:  # each machine priced once, by its local main process (measure/distributed.py)
                scope = "per-process estimates over the process tree given to the tag" if tree is not None else None
                if tree is None and launch.counts_machine:
                    tree, scope = launcher_tree(launch)
                self._distributed = launch.describe(scope)
            tree = tree or energy_mod.ProcessTree()
            setup = self._setup or energy_mod.build_meters(
                tree,
                backend=self._backend,
                cpu_tdp_w=self._cpu_tdp_w,
                powercap_root=self._powercap_root or energy_mod.POWERCAP_ROOT,
                nvml=self._nvml,
                gpu_indices=self._gpu_indices,
            )
            self._apply_settings()
            self._session = energy_mod.EnergySession(tree, setup, self._interval_s, clock=self._clock)
            self._start = self._session.start()
        self._token = _active.set(self)
        return self

    def _apply_settings(self) -> None:
        """A top-level tag takes what it was not given from the environment or a settings file."""
        found = self._settings
        if "pue" in found and self._pue is None:
            self._pue, self._pue_source = found["pue"].value, f"setting: {found['pue'].source}"
        if "usd_per_hour" in found and self._price is None:
            self._price = cost_mod.Price(found["usd_per_hour"].value, f"setting: {found['usd_per_hour'].source}")
        if "region" in found and self._intensity is None and self._series is None:
            self._intensity, self._given["region"] = found["region"].value, found["region"].value.region

    def _inherit(self, parent: "PriceTag") -> None:
        for key in ("project", "stage"):
            if self._given[key] is None:
                self._given[key] = parent._given[key]
        if self._pue is None and parent._pue is not None:
            self._pue, self._pue_source = parent._pue, "parent"
        if self._price is None:
            self._price = parent._price
        if self._intensity is None and self._series is None:
            self._intensity, self._series = parent._intensity, parent._series
            self._given["region"] = parent._given["region"]

    def prices(self) -> dict[str, bool]:
        """Whether this tag will have a CO2e figure (a region or an intensity, given or set) and a cost (a price):
        ``{"co2e_kg": bool, "cost_usd": bool}``, known before it starts (a budget on a figure it cannot have is
        refused before any work)."""
        tag = self
        while tag._parent is not None:
            tag = tag._parent
        found = tag._settings
        return {"co2e_kg": tag._intensity is not None or tag._series is not None or "region" in found,
                "cost_usd": tag._price is not None or "usd_per_hour" in found}

    def peek(self) -> PriceTagRecord:
        """The record of a running tag so far (status ``running``), without stopping it.

        For long jobs that may be killed: save ``peek()`` now and then, and add the saved records of
        interrupted attempts to the final one with ``combine_records``. Nothing goes to the ledger.
        """
        if self._start is None or self._record is not None:
            raise RuntimeError(f"price tag {self.name!r} is not running")
        return self._build(self._session.snapshot(), None, "running")

    def stop(self, status: str = "ok") -> PriceTagRecord:
        if self._start is None:
            raise RuntimeError(f"price tag {self.name!r} was never started")
        if self._record is not None:
            return self._record
        try:
            _active.reset(self._token)
        except ValueError:  # closed in another context than it was opened in
            _active.set(self._parent)
        if self._parent is not None:
            end, cc = self._session.snapshot(), None
        else:
            end, cc = self._session.stop()
        self._record = self._build(end, cc, status)
        if self._parent is not None:
            self._parent._phases.append(self._record)
        elif self._ledger and (self._distributed is None or self._distributed["counted"]):
            self._append_to_ledger()
        return self._record

    # ---- the record -------------------------------------------------------------------------------

    def _build(self, end, cc, status: str) -> PriceTagRecord:
        start = self._start
        session = self._session
        wall_s = max(end.t_mono - start.t_mono, 0.0)
        reasons: dict[str, str] = {}
        notes: list[str] = []

        by_component, sources = {}, {}
        if session.codecarbon is not None:  # CodeCarbon backend: one reading for the whole window
            if cc is None:
                for c in COMPONENTS:
                    by_component[c], sources[c] = None, "unavailable"
                reasons["energy_kwh"] = "the codecarbon backend reads only whole tags, not phases"
            else:
                for c in COMPONENTS:
                    by_component[c], sources[c] = cc[c] / J_PER_KWH, "codecarbon"
        else:
            for meter in session.setup.meters:
                j = end.energy_j.get(meter.component, 0.0) - start.energy_j.get(meter.component, 0.0)
                by_component[meter.component] = max(j, 0.0) / J_PER_KWH
                sources[meter.component] = meter.source
            for c in COMPONENTS:
                if c not in by_component:
                    by_component[c], sources[c] = None, "unavailable"
                    why = session.setup.unavailable.get(c)
                    if why:
                        reasons[f"energy_kwh_by_component.{c}"] = why
        by_component = {c: by_component.get(c) for c in COMPONENTS}
        sources = {c: sources.get(c, "unavailable") for c in COMPONENTS}
        measured = [by_component[c] for c in COMPONENTS if by_component.get(c) is not None]
        hardware_kwh = sum(measured) if measured else None
        used = [sources[c] for c in ("gpu", "cpu", "ram") if by_component.get(c) is not None]
        energy_source = "+".join(dict.fromkeys(used)) or "unavailable"
        if "estimate" in energy_source and "rapl" in session.setup.unavailable:
            notes.append(f"CPU energy is an estimate ({session.setup.unavailable['rapl']})")

        if self._pue is not None:
            pue, pue_source = self._pue, self._pue_source
        else:
            pue, pue_source = DEFAULT_PUE, "default"
            notes.append(PUE_WARNING)
            _warn_once(PUE_WARNING)
        energy_kwh = hardware_kwh * pue if hardware_kwh is not None else None

        co2e = intensity = source = region = year = kind = None
        missing: list[str] = []
        kwh_by_hour = ({} if energy_kwh is None else
                       {h: kwh * pue for h, kwh in self._kwh_by_hour(start, end, hardware_kwh, cc).items()})
        hours = [(h, kwh, None) for h, kwh in sorted(kwh_by_hour.items())]  # (hour, kWh, g/kWh of the hour)
        if energy_kwh is None:
            reasons["co2e_kg"] = "no energy figure"
        elif self._series is not None:
            series, region = self._series
            result = series.co2e(region, kwh_by_hour)
            co2e, intensity, source, kind = result.co2e_kg, result.intensity_g_per_kwh, result.source, "time-series"
            hours = list(result.by_hour)
            missing = result.missing_hours_utc
            if missing:
                message = (
                    f"{series.path} has no {region} intensity for {describe_missing(missing)}; used the region's "
                    f"mean over the file, {result.fill_g_per_kwh:.1f} gCO2e/kWh, for those hours"
                )
                notes.append(message)
                _warn_once(message)
        elif self._intensity is not None:
            i = self._intensity
            co2e = energy_kwh * i.g_per_kwh / 1000.0
            intensity, source, year, kind = i.g_per_kwh, i.source, i.year, i.kind
            hours = [(h, kwh, i.g_per_kwh) for h, kwh, _ in hours]
            region = i.region if i.kind != "user" else None
        else:
            reasons["co2e_kg"] = "no region or intensity given (pass region= or intensity_g_per_kwh=)"

        cost = cost_mod.cost_usd(self._price, wall_s)
        if cost is None:
            reasons["cost_usd"] = "no price given (pass usd_per_hour= or instance=)"

        flops = self._flops + sum(p.flops or 0.0 for p in self._phases)
        flops_known = self._flops_given or any(p.flops is not None for p in self._phases)
        if not flops_known:
            reasons["flops"] = "no FLOPs added (tag.add_flops / tag.add_model_flops)"

        unphased = {}
        if self._phases:
            unphased["wall_s"] = max(wall_s - sum(p.wall_s for p in self._phases), 0.0)
            if energy_kwh is not None and all(p.energy_kwh is not None for p in self._phases):
                unphased["energy_kwh"] = energy_kwh - sum(p.energy_kwh for p in self._phases)
            if co2e is not None and all(p.co2e_kg is not None for p in self._phases):
                unphased["co2e_kg"] = co2e - sum(p.co2e_kg for p in self._phases)

        details = session.details()
        if self._parent is not None:  # memory statistics belong to the whole session, not a phase
            details = {k: v for k, v in details.items() if not k.startswith("ram_gb")}
        return PriceTagRecord(
            id=str(uuid.uuid4()),
            name=self.name,
            project=self._given["project"],
            stage=self._given["stage"],
            status=status,
            started_at_utc=_iso(start.t_unix),
            ended_at_utc=_iso(end.t_unix),
            wall_s=wall_s,
            cpu_s=max(end.cpu_s - start.cpu_s, 0.0),
            energy_kwh=energy_kwh,
            energy_kwh_hardware=hardware_kwh,
            energy_kwh_by_component=by_component,
            energy_source=energy_source,
            energy_source_by_component=sources,
            energy_details=details,
            pue=pue,
            pue_source=pue_source,
            co2e_kg=co2e,
            intensity_g_per_kwh=intensity,
            intensity_source=source,
            intensity_region=region,
            intensity_year=year,
            intensity_kind=kind,
            intensity_missing_hours_utc=missing,
            cost_usd=cost,
            usd_per_hour=self._price.usd_per_hour if self._price else None,
            cost_source=self._price.source if self._price else None,
            flops=flops if flops_known else None,
            phases=list(self._phases),
            by_hour=[_hour_row(h, kwh, g) for h, kwh, g in hours],
            unphased_wall_s=unphased.get("wall_s"),
            unphased_energy_kwh=unphased.get("energy_kwh"),
            unphased_co2e_kg=unphased.get("co2e_kg"),
            reasons=reasons,
            warnings=notes,
            machine=machine_summary() if self._parent is None else {},
            meta=self._meta,
            distributed=self._distributed if self._parent is None else None,
        )

    def _kwh_by_hour(self, start, end, hardware_kwh: float, cc) -> dict[float, float]:
        if cc is None:
            joules = self._session.timeline.by_hour(start.t_unix, end.t_unix)
            total = sum(joules.values())
            if total > 0:  # the timeline sums the same meters: rescale away interpolation rounding
                return {h: hardware_kwh * j / total for h, j in joules.items()}
        # no timeline (CodeCarbon backend) or no energy: spread evenly over the window's time
        span = max(end.t_unix - start.t_unix, 1e-9)
        out, hour = {}, int(start.t_unix // 3600) * 3600.0
        while hour < end.t_unix or not out:
            overlap = min(end.t_unix, hour + 3600) - max(start.t_unix, hour)
            out[hour] = hardware_kwh * max(overlap, 0.0) / span if end.t_unix > start.t_unix else hardware_kwh
            hour += 3600.0
        return out

    def _append_to_ledger(self) -> None:
        from greenlm.measure.ledger import Ledger

        ledger = self._ledger if isinstance(self._ledger, Ledger) else Ledger()
        try:
            ledger.append(self._record)
        except GreenlmError as err:  # never fail the user's finished work over the ledger
            message = f"price tag not added to the ledger: {err}"
            self._record.warnings.append(message)
            warnings.warn(message, PriceTagWarning, stacklevel=3)


def running_tag() -> "PriceTag | None":
    """The outermost price tag running in this thread / task (a stage's own tag, not one of its phases), or None."""
    tag = _active.get()
    while tag is not None and tag._parent is not None:
        tag = tag._parent
    return tag if tag is not None and tag.running else None


def combine_records(records: list[PriceTagRecord], note: str | None = None) -> PriceTagRecord:
    """One record for work done in several attempts (a job killed and resumed): time, energy, CO2e,
    cost and FLOPs add up; the rest comes from the last attempt. A figure missing in any attempt is
    missing in the sum (its reason says which attempt), rather than silently undercounted."""
    if not records:
        raise ValueError("combine_records needs at least one record")
    if len(records) == 1:
        return records[0]
    last = records[-1]
    reasons = dict(last.reasons)

    def total(name: str, values: list) -> float | None:
        if any(v is None for v in values):
            missing = [str(i + 1) for i, v in enumerate(values) if v is None]
            reasons.setdefault(name, f"not measured in attempt(s) {', '.join(missing)} of {len(values)}")
            return None
        return float(sum(values))

    by_component = {c: total(f"energy_kwh_by_component.{c}", [r.energy_kwh_by_component.get(c) for r in records])
                    if any(r.energy_kwh_by_component.get(c) is not None for r in records) else None
                    for c in last.energy_kwh_by_component}
    energy = total("energy_kwh", [r.energy_kwh for r in records])
    co2e = total("co2e_kg", [r.co2e_kg for r in records])
    known_flops = [r.flops for r in records if r.flops is not None]
    warnings_all = list(dict.fromkeys(w for r in records for w in r.warnings))
    warnings_all.append(note or f"added up over {len(records)} attempts (interrupted, then resumed)")
    return replace(
        last,
        id=str(uuid.uuid4()),
        started_at_utc=records[0].started_at_utc,
        wall_s=sum(r.wall_s for r in records),
        cpu_s=sum(r.cpu_s for r in records),
        energy_kwh=energy,
        energy_kwh_hardware=total("energy_kwh_hardware", [r.energy_kwh_hardware for r in records]),
        energy_kwh_by_component=by_component,
        co2e_kg=co2e,
        intensity_g_per_kwh=1000.0 * co2e / energy if co2e is not None and energy else last.intensity_g_per_kwh,
        cost_usd=total("cost_usd", [r.cost_usd for r in records]),
        flops=float(sum(known_flops)) if known_flops else None,
        phases=[p for r in records for p in r.phases],
        by_hour=(_merge_hours([row for r in records for row in r.by_hour])
                 if all(r.by_hour or r.energy_kwh is None for r in records) else []),  # rows must add up
        unphased_wall_s=None,
        unphased_energy_kwh=None,
        unphased_co2e_kg=None,
        reasons=reasons,
        warnings=warnings_all,
        meta={**last.meta, "attempts": len(records), "attempt_ids": [r.id for r in records]},
    )


def _resolve_intensity(region, intensity_g_per_kwh, intensity_csv):
    """(annual Intensity or None, (IntensitySeries, region) or None), validated now."""
    if intensity_csv is not None:
        if intensity_g_per_kwh is not None:
            raise GreenlmError("give an intensity CSV or a fixed intensity, not both")
        if isinstance(intensity_csv, IntensitySeries):
            series = intensity_csv
        elif hasattr(intensity_csv, "hours_s"):  # a grid_series.GridSeries (not imported here: it needs numpy)
            if region is None:
                raise GreenlmError(f"a grid series needs a region: one of {', '.join(intensity_csv.regions[:12])}")
            series = IntensitySeries.from_grid(intensity_csv, region)
            region = series.regions[0]
        else:
            series = IntensitySeries.load(intensity_csv)
        if region is None:
            raise GreenlmError(
                f"an intensity CSV needs a region: one of {', '.join(series.regions[:12])}"
            )
        series.region(region)  # raises with the closest names when missing
        return None, (series, region)
    if intensity_g_per_kwh is not None:
        if region is not None:
            raise GreenlmError("give a region or a fixed intensity (gCO2e/kWh), not both")
        return user_intensity(intensity_g_per_kwh), None
    if region is not None:
        return lookup_intensity(region), None
    return None, None


def _hour_row(hour_s: float, kwh: float, g_per_kwh: float | None) -> dict:
    return {"hour_utc": datetime.fromtimestamp(hour_s, tz=timezone.utc).strftime("%Y-%m-%dT%H:00Z"),
            "energy_kwh": kwh, "intensity_g_per_kwh": g_per_kwh,
            "co2e_kg": None if g_per_kwh is None else kwh * g_per_kwh / 1000.0}


def _merge_hours(rows: list[dict]) -> list[dict]:
    """Attempts that ran in the same clock hour add up (their intensity is the hour's, the same in each)."""
    merged: dict[str, dict] = {}
    for row in rows:
        seen = merged.get(row["hour_utc"])
        if seen is None:
            merged[row["hour_utc"]] = dict(row)
            continue
        seen["energy_kwh"] += row["energy_kwh"]
        seen["co2e_kg"] = None if seen["co2e_kg"] is None or row["co2e_kg"] is None else seen["co2e_kg"] + row["co2e_kg"]
        if seen["co2e_kg"] is not None and seen["energy_kwh"] > 0:  # energy-weighted, if attempts used other figures
            seen["intensity_g_per_kwh"] = 1000.0 * seen["co2e_kg"] / seen["energy_kwh"]
    return [merged[h] for h in sorted(merged)]


def _machine_settings(given: dict) -> dict:
    """The settings (``greenlm.measure.settings``) this tag was not given, checked now, before any work: a region as
    its Intensity, whose source says where the region was set."""
    found = settings_mod.machine_settings()
    out = {}
    if given["pue"] is None and "pue" in found:
        out["pue"] = found["pue"]
    if given["usd_per_hour"] is None and given["instance"] is None and "usd_per_hour" in found:
        out["usd_per_hour"] = found["usd_per_hour"]
    no_intensity = given["region"] is None and given["intensity_g_per_kwh"] is None and given["intensity_csv"] is None
    if no_intensity and "region" in found:
        setting = found["region"]
        try:
            intensity = lookup_intensity(setting.value)
        except GreenlmError as err:
            raise GreenlmError(f"{setting.source}: {err}") from None
        out["region"] = settings_mod.Setting(
            dataclasses.replace(intensity, source=f"{intensity.source}; region set by {setting.source}"),
            setting.source)
    return out


def _iso(t_unix: float) -> str:
    return datetime.fromtimestamp(t_unix, tz=timezone.utc).isoformat(timespec="milliseconds")


# ---- a human summary -------------------------------------------------------------------------------


def _fmt(value, unit: str, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if value != 0 and (abs(value) < 10 ** -(digits - 1) or abs(value) >= 1e6):
        return f"{value:.3e} {unit}"
    return f"{value:.{digits}g} {unit}"


def format_record(rec: PriceTagRecord, indent: str = "") -> str:
    """Short text of a record and its phases."""
    parts = rec.energy_kwh_by_component
    comp = ", ".join(f"{c} {_fmt(parts.get(c), 'kWh')}" for c in COMPONENTS if parts.get(c) is not None)
    lines = [
        f"{indent}price tag '{rec.name}'" + (f" [{rec.status}]" if rec.status != "ok" else ""),
        f"{indent}  time     {rec.wall_s:.3f} s wall, {rec.cpu_s:.3f} s CPU",
        f"{indent}  energy   {_fmt(rec.energy_kwh, 'kWh')} (PUE {rec.pue:g}, {rec.pue_source}; {comp}) "
        f"source: {rec.energy_source}",
        f"{indent}  CO2e     {_fmt(rec.co2e_kg, 'kg')}"
        + (f" at {rec.intensity_g_per_kwh:.1f} g/kWh, {rec.intensity_source}" if rec.intensity_g_per_kwh is not None
           else f" ({rec.reasons.get('co2e_kg', '')})"),
        f"{indent}  cost     "
        + (f"{rec.cost_usd:.4f} USD at {rec.usd_per_hour:g} USD/h" if rec.cost_usd is not None
           else f"n/a ({rec.reasons.get('cost_usd', '')})"),
    ]
    if rec.flops is not None:
        lines.append(f"{indent}  FLOPs    {rec.flops:.3e}")
    if not indent and len(rec.by_hour) > 1:  # a run over several clock hours: where its energy and CO2e fell
        shown = rec.by_hour if len(rec.by_hour) <= 12 else rec.by_hour[:6] + [None] + rec.by_hour[-5:]
        for row in shown:
            lines.append("  by hour  ..." if row is None else
                         f"  by hour  {row['hour_utc']}  {_fmt(row['energy_kwh'], 'kWh')}"
                         + ("" if row["co2e_kg"] is None else
                            f"  {_fmt(row['co2e_kg'], 'kg')} at {row['intensity_g_per_kwh']:.1f} g/kWh"))
    for phase in rec.phases:
        lines.append(format_record(phase, indent + "  "))
    if not indent:
        lines += [f"  note: {w}" for w in rec.warnings]
    return "\n".join(lines)
