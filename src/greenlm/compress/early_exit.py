"""Early exit as a compression stage: train exits, calibrate them, pick the threshold for the user's goal.

    config = EarlyExitConfig(max_drop=1.0)          # or target_speedup=3.0, or threshold=0.9
    metrics = run(model_dir, task, config, out_dir, work_dir=out_dir / ".work")

Steps (Schwartz et al. 2020, "The Right Tool for the Job"; model code in ``greenlm.models.early_exit``):
  1. held-out rows: ``heldout_fraction`` of the training split (at most ``heldout_max_examples``), drawn
     with ``seed``, are set aside. They are never trained on and serve calibration and threshold choice.
  2. training with the one loop (``greenlm.train.train``): exits after ``exit_layers`` (default every
     layer) trained with the encoder, the loss being the "sum" of the exits' cross-entropies (Schwartz et
     al.), the layer-"weighted" average of PABEE (Zhou et al. 2020: exit i weighs i), or "self_distill"
     (FastBERT, Liu et al. 2020: the exits learn the final classifier's distribution); or on a frozen
     encoder (``train_encoder=False``): only the new exits learn, and full-depth predictions stay the
     original model's.
  3. calibration: one temperature per exit, minimising the held-out NLL (Guo et al. 2017).
  4. the speed/accuracy curve over thresholds (patience values for PABEE) on the held-out rows, from one
     pass that computes every exit: accuracy, exits per layer, and FLOPs per example (``ExitCosts``).
  5. the operating point: the cheapest point within ``max_drop`` accuracy points of the model's own
     full depth (the default goal, 1.0 point); or the most accurate point reaching ``target_speedup``
     (expected FLOPs speedup; a target no point reaches keeps the fastest point and says so); or a
     fixed ``threshold`` / ``patience``.
  6. the report on dev: the same curve, the chosen model's metrics from real batched early exit, the
     upstream model's metrics, and throughput (batch 32) and latency (batch 1) of both, timed side by
     side with ``greenlm.models.measure_speed``.

Held-out rows and the upstream model: a teacher fine-tuned on the whole training split has seen them,
so its held-out accuracy flatters it. The held-out rows only compare thresholds of one model with each
other: the drop is taken against that model's full depth on the same rows. Dev gives the figures.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

import greenlm
from greenlm.common import GreenlmError, atomic_write_json, sha256_file
from greenlm.data import EncodedSplit, Task, TaskSplit, UNLABELED, collate, encode_split, length_grouped_batches
from greenlm.models import load_classifier, measure_speed, model_max_length, resolve_model_source, speed_inputs, torch_forward
from greenlm.models.early_exit import (POLICIES, POOLINGS, EarlyExitClassifier, ExitCosts, exit_confidence, measure_exit_costs,
                                       policy_exits_early, save_early_exit, simulate_exits)
from greenlm.models.inference import predict_outputs
from greenlm.train import TrainConfig, classification_metrics, evaluate, train
from greenlm.train.evaluation import align_labels

METHOD = "early_exit"
METRICS_FILE = "metrics.json"
CURVE_JSON = "curve.json"
CURVE_CSV = "curve.csv"
LOSSES = ("sum", "weighted", "self_distill")
DEFAULT_MAX_DROP = 1.0  # accuracy points: the goal when none is given
CALIBRATION_BINS = 15  # ECE bins


@dataclass(frozen=True)
class EarlyExitConfig:
    # -- exits and policy
    exit_layers: list[int] | None = None  # 1-based layers with an exit; None: every layer (the last always: the model's classifier)
    policy: str = "max_prob"  # "max_prob" (Schwartz et al. 2020) | "entropy" (DeeBERT) | "patience" (PABEE)
    exit_pooling: str = "mean"  # what an exit reads: "mean" of the tokens' states | "cls" (first token, as BERT's pooler)
    # -- the goal: at most one of these four; none set means max_drop = DEFAULT_MAX_DROP
    max_drop: float | None = None  # accuracy points the exits may cost vs full depth, on held-out rows
    target_speedup: float | None = None  # expected FLOPs speedup per example to reach, on held-out rows
    threshold: float | None = None  # a fixed confidence threshold in (0, 1] (max_prob, entropy); 1.0 never exits early
    patience: int | None = None  # a fixed patience >= 1 (patience policy)
    # -- training
    train_encoder: bool = True  # False: freeze the encoder and its classifier; only the new exits learn
    loss: str = "sum"  # "sum" of exit losses | "weighted" by layer (PABEE) | "self_distill" from the final classifier (FastBERT)
    distill_temperature: float = 1.0  # softmax temperature of the self-distillation targets and students
    epochs: float = 2.0
    batch_size: int = 32
    learning_rate: float = 2e-5  # the encoder and its classifier (BERT fine-tuning's usual rate)
    exit_learning_rate: float = 1e-3  # the new exit heads: small, randomly initialised, they need larger steps
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    max_steps: int | None = None  # stop training after this many optimizer steps
    train_subset: int | None = None  # train on this many random rows (after the held-out rows are set aside)
    heldout_fraction: float = 0.1  # share of the training split set aside for calibration and the threshold
    heldout_max_examples: int = 2000  # cap on the held-out rows
    max_length: int | None = None  # tokens per input; None: the upstream model's own (else 128)
    seed: int = 42  # held-out draw, exit initialisation, batch order
    precision: str = "auto"  # training precision, as TrainConfig
    checkpoint_every_steps: int = 200
    # -- report
    measure_speed: bool = True  # time the chosen model and the upstream model side by side on dev
    speed_examples: int = 256  # dev rows used for timing (a fixed seeded sample)

    def __post_init__(self):
        def fail(message: str) -> None:
            raise GreenlmError(f"early-exit setting: {message}")

        def closest(value: str, choices) -> str:
            near = difflib.get_close_matches(str(value), choices, n=1)
            return f" (did you mean '{near[0]}'?)" if near else ""

        if self.exit_layers is not None:
            if not isinstance(self.exit_layers, (list, tuple)) or not self.exit_layers:
                fail("exit_layers must be a non-empty list of layer numbers (1 = first layer), or null for every layer")
            for layer in self.exit_layers:
                if isinstance(layer, bool) or not isinstance(layer, int) or layer < 1:
                    fail(f"exit layer {layer!r} is out of range: layers are numbered from 1")
        if self.policy not in POLICIES:
            fail(f"unknown policy '{self.policy}'{closest(self.policy, POLICIES)}; use one of: {', '.join(POLICIES)}")
        if self.exit_pooling not in POOLINGS:
            fail(f"unknown exit_pooling '{self.exit_pooling}'{closest(self.exit_pooling, POOLINGS)};"
                 f" use one of: {', '.join(POOLINGS)}")
        goals = [k for k in ("max_drop", "target_speedup", "threshold", "patience") if getattr(self, k) is not None]
        if len(goals) > 1:
            fail(f"give at most one of max_drop, target_speedup, threshold, patience (got {', '.join(goals)})")
        if self.max_drop is not None and not (_number(self.max_drop) and 0 <= self.max_drop <= 100):
            fail(f"max_drop {self.max_drop!r} must be accuracy points in [0, 100]")
        if self.target_speedup is not None and not (_number(self.target_speedup) and self.target_speedup >= 1):
            fail(f"target_speedup {self.target_speedup!r} must be a number >= 1 (e.g. 3 for 3x)")
        if self.threshold is not None:
            if self.policy == "patience":
                fail("the patience policy takes patience, not threshold")
            if not (_number(self.threshold) and 0 < self.threshold <= 1):
                fail(f"threshold {self.threshold!r} is outside (0, 1]: 1.0 never exits early, smaller values exit earlier")
        if self.patience is not None:
            if self.policy != "patience":
                fail(f"patience is for the patience policy; policy '{self.policy}' takes a threshold")
            if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 1:
                fail(f"patience {self.patience!r} must be a whole number >= 1")
        if self.loss not in LOSSES:
            fail(f"unknown loss '{self.loss}'{closest(self.loss, LOSSES)}; use one of: {', '.join(LOSSES)}")
        checks = [
            (_number(self.distill_temperature) and self.distill_temperature > 0, "distill_temperature must be > 0"),
            (_number(self.epochs) and self.epochs > 0, "epochs must be > 0"),
            (_count(self.batch_size), "batch_size must be a whole number >= 1"),
            (_number(self.learning_rate) and self.learning_rate > 0, "learning_rate must be > 0"),
            (_number(self.exit_learning_rate) and self.exit_learning_rate > 0, "exit_learning_rate must be > 0"),
            (self.max_steps is None or _count(self.max_steps), "max_steps must be a whole number >= 1"),
            (self.train_subset is None or _count(self.train_subset), "train_subset must be a whole number >= 1"),
            (_number(self.heldout_fraction) and 0 < self.heldout_fraction <= 0.5, "heldout_fraction must be in (0, 0.5]"),
            (_count(self.heldout_max_examples), "heldout_max_examples must be a whole number >= 1"),
            (self.max_length is None or (_count(self.max_length) and self.max_length >= 4), "max_length must be >= 4 tokens"),
            (_count(self.speed_examples), "speed_examples must be a whole number >= 1"),
            (_count(self.checkpoint_every_steps), "checkpoint_every_steps must be a whole number >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                fail(message)
        self.train_config()  # the training settings validate themselves

    def goal(self) -> tuple[str, float]:
        """("max_drop" | "target_speedup" | "threshold" | "patience", value)."""
        for key in ("target_speedup", "threshold", "patience", "max_drop"):
            if getattr(self, key) is not None:
                return key, getattr(self, key)
        return "max_drop", DEFAULT_MAX_DROP

    def train_config(self) -> TrainConfig:
        """The loop's settings; its learning rate is the encoder's (or the exits' when the encoder is frozen)."""
        rate = self.learning_rate if self.train_encoder else self.exit_learning_rate
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, learning_rate=rate,
                           weight_decay=self.weight_decay, warmup_ratio=self.warmup_ratio, seed=self.seed,
                           max_steps=self.max_steps, precision=self.precision,
                           checkpoint_every_steps=self.checkpoint_every_steps, select_metric=None)

    def lr_scale(self) -> dict[str, float] | None:
        """The exits' learning rate as a multiple of the encoder's (for ``train(lr_scale=...)``)."""
        return {"exits.": self.exit_learning_rate / self.learning_rate} if self.train_encoder else None

    def to_dict(self) -> dict:
        out = asdict(self)
        if out["exit_layers"] is not None:
            out["exit_layers"] = list(out["exit_layers"])
        return out


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


# ---- data ---------------------------------------------------------------------------------------


def split_heldout(split: TaskSplit, fraction: float, max_examples: int, seed: int) -> tuple[TaskSplit, TaskSplit]:
    """(rows to train on, held-out rows): a seeded draw of ``min(max_examples, fraction * rows)`` rows."""
    n = len(split)
    k = min(max_examples, round(fraction * n))
    if k < 2 or n - k < 2:
        raise GreenlmError(
            f"the training split has {n} rows: too few to set {max(k, 2)} aside for calibration and still train;"
            " use a larger training set or a larger heldout_fraction"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    heldout = order[:k].sort().values.tolist()
    rest = order[k:].sort().values.tolist()
    return split.select(rest), split.select(heldout)


@torch.no_grad()
def collect_exit_logits(model: EarlyExitClassifier, encoded: EncodedSplit, *, pad_token_id: int,
                        batch_size: int = 128) -> torch.Tensor:
    """Logits of every exit for every row, running all layers: [E, N, K] float32, rows in ``encoded`` order."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = torch.empty(len(model.exit_layers), len(encoded), model.config.num_labels)
    for indices in length_grouped_batches(encoded.lengths(), batch_size, shuffle=False):
        batch = collate(encoded, indices, pad_token_id)
        batch.pop("labels", None)
        logits = model.exit_logits(**{k: v.to(device) for k, v in batch.items()})
        out[:, torch.as_tensor(indices)] = torch.stack([z.float().cpu() for z in logits])
    model.train(was_training)
    return out


# ---- training -----------------------------------------------------------------------------------


def exit_loss(exit_logits, labels: torch.Tensor, exit_layers, *, scheme: str, train_final: bool,
              distill_temperature: float = 1.0) -> torch.Tensor:
    """The training loss over exits ([B, K] each, in exit order; the last is the model's classifier).

    sum           sum_i CE(z_i, y)                                       Schwartz et al. 2020
    weighted      sum_i l_i CE(z_i, y) / sum_i l_i, l_i = layer of exit i  PABEE (Zhou et al. 2020)
    self_distill  sum_{i<last} tau^2 KL(softmax(z_last / tau) || softmax(z_i / tau)) + CE(z_last, y)
                  with the final classifier's distribution as a fixed target (FastBERT, Liu et al. 2020)
    ``train_final`` False (frozen encoder): the last exit is fixed, so its CE term is left out.
    """
    final = exit_logits[-1].float()
    if scheme == "self_distill":
        tau = distill_temperature
        target = F.softmax(final.detach() / tau, dim=-1)
        loss = final.new_zeros(())
        for z in exit_logits[:-1]:
            loss = loss + F.kl_div(F.log_softmax(z.float() / tau, dim=-1), target, reduction="batchmean") * tau**2
        return loss + F.cross_entropy(final, labels) if train_final else loss
    pairs = list(zip(exit_layers, exit_logits))
    if not train_final:
        pairs = pairs[:-1]
    losses = [F.cross_entropy(z.float(), labels) for _, z in pairs]
    if scheme == "sum":
        return torch.stack(losses).sum()
    if scheme == "weighted":
        weights = torch.tensor([float(layer) for layer, _ in pairs], device=final.device)
        return (weights * torch.stack(losses)).sum() / weights.sum()
    raise ValueError(f"unknown exit loss {scheme!r}")


def _loss_fn(config: EarlyExitConfig, exit_layers, train_final: bool):
    def loss_fn(model, batch: dict) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        output = model(**inputs)  # training mode: every exit's logits
        return exit_loss(output.exit_logits, batch["labels"], exit_layers, scheme=config.loss,
                         train_final=train_final, distill_temperature=config.distill_temperature)

    return loss_fn


# ---- calibration --------------------------------------------------------------------------------


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    return float(F.cross_entropy(logits.float() / temperature, labels))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 100) -> float:
    """The temperature T > 0 minimising the NLL of softmax(logits / T) (Guo et al. 2017), fitted in log T
    with L-BFGS; T = 1 is kept when the fit does not lower the NLL. Clamped to [0.01, 100]."""
    logits, labels = logits.detach().float().clone(), labels.detach().long().clone()
    with torch.enable_grad():
        log_t = torch.zeros((), requires_grad=True)
        optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            loss = F.cross_entropy(logits / log_t.exp(), labels)
            loss.backward()
            return loss

        optimizer.step(closure)
    t = float(log_t.detach().exp())
    t = min(max(t, 0.01), 100.0) if math.isfinite(t) else 1.0
    return t if nll(logits, labels, t) < nll(logits, labels, 1.0) else 1.0


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0,
                               bins: int = CALIBRATION_BINS) -> float:
    """ECE: sum over equal-width confidence bins of |accuracy - mean confidence| x share of rows."""
    probs = F.softmax(logits.float() / temperature, dim=-1)
    confidence, prediction = probs.max(dim=-1)
    correct = (prediction == labels).float()
    ece = 0.0
    edges = torch.linspace(0, 1, bins + 1)
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            ece += float(inside.float().mean() * (correct[inside].mean() - confidence[inside].mean()).abs())
    return ece


def calibrate(exit_logits: torch.Tensor, labels: torch.Tensor, exit_layers) -> tuple[list[float], list[dict]]:
    """One temperature per exit; the report gives NLL and ECE before and after, per exit."""
    temperatures, report = [], []
    for layer, logits in zip(exit_layers, exit_logits):
        t = fit_temperature(logits, labels)
        temperatures.append(t)
        report.append({
            "layer": layer, "temperature": round(t, 5),
            "heldout_nll_before": round(nll(logits, labels), 5), "heldout_nll_after": round(nll(logits, labels, t), 5),
            "heldout_ece_before": round(expected_calibration_error(logits, labels), 5),
            "heldout_ece_after": round(expected_calibration_error(logits, labels, t), 5),
        })
    return temperatures, report


# ---- the speed/accuracy curve and the operating point -------------------------------------------


def candidate_knobs(exit_logits: torch.Tensor, temperatures, policy: str) -> list:
    """Thresholds to try (101 quantiles of the held-out confidences at the early exits, one below them all,
    and 1.0), or patience values 1 .. E-1 (E-1 and above never exit early)."""
    num_exits = exit_logits.shape[0]
    if policy == "patience":
        return list(range(1, max(num_exits - 1, 1) + 1))
    values = {1.0}
    if num_exits > 1:
        conf = torch.cat([exit_confidence(exit_logits[j], temperatures[j], policy) for j in range(num_exits - 1)])
        qs = torch.quantile(conf.double(), torch.linspace(0, 1, 101, dtype=torch.double))
        values.update(float(f"{q:.9g}") for q in qs.tolist())  # 9 digits tell float32 confidences near 1 apart
        values.add(float(conf.min()) * (1 - 1e-6))  # below every confidence: every row exits at the first exit
    return sorted(v for v in values if 0 < v <= 1)


def _knob_kwargs(policy: str, knob) -> dict:
    return {"patience": int(knob)} if policy == "patience" else {"threshold": float(knob)}


def operating_curve(exit_logits: torch.Tensor, labels: torch.Tensor, lengths: torch.Tensor, costs: ExitCosts,
                    exit_layers, temperatures, policy: str, knobs) -> list[dict]:
    """One point per knob: accuracy, drop vs full depth (points), mean exit layer, share exiting at each
    layer, FLOPs per example and FLOPs speedup over the model without exits (same rows, their own lengths)."""
    n = exit_logits.shape[1]
    layer_of = torch.tensor(exit_layers)
    full_flops = float(costs.full_flops(lengths).sum())
    full_depth_accuracy = float((exit_logits[-1].argmax(-1) == labels).double().mean())
    key = "patience" if policy == "patience" else "threshold"
    points = []
    for knob in knobs:
        kwargs = _knob_kwargs(policy, knob)
        position = simulate_exits(exit_logits, temperatures, policy, **kwargs)
        prediction = exit_logits[position, torch.arange(n)].argmax(-1)
        layers = layer_of[position]
        early = policy_exits_early(policy, kwargs.get("threshold"), kwargs.get("patience"), len(exit_layers))
        flops = float(costs.exit_flops(lengths, layers, heads_run=early).sum())
        accuracy = float((prediction == labels).double().mean())
        points.append({
            key: kwargs[key],
            "exits_early": early,
            "accuracy": round(accuracy, 6),
            "drop_points": round(100 * (full_depth_accuracy - accuracy), 4),
            "mean_exit_layer": round(float(layers.double().mean()), 4),
            "exit_share": {str(layer): round(float((layers == layer).double().mean()), 4) for layer in exit_layers},
            "flops_per_example": round(flops / n, 1),
            "flops_speedup": round(full_flops / flops, 4),
        })
    return points


def select_point(curve: list[dict], goal: str, value: float, policy: str) -> tuple[dict, str | None]:
    """The point of ``curve`` that meets the goal, and a note when the goal could not be met as asked."""
    key = "patience" if policy == "patience" else "threshold"
    if goal in ("threshold", "patience"):
        return next(p for p in curve if p[key] == value), None
    if goal == "max_drop":
        within = [p for p in curve if p["drop_points"] <= value + 1e-9]  # full depth (drop 0) is always within
        best = max(within, key=lambda p: (p["flops_speedup"], p["accuracy"], p[key]))
        if not best["exits_early"] or best["flops_speedup"] <= 1.0:
            return best, (f"no {key} keeps the held-out drop within {value} points and saves compute;"
                          " keeping full depth (no early exit)")
        return best, None
    reached = [p for p in curve if p["flops_speedup"] >= value - 1e-9]
    if reached:
        return max(reached, key=lambda p: (p["accuracy"], p["flops_speedup"], p[key])), None
    best = max(curve, key=lambda p: (p["flops_speedup"], p["accuracy"], p[key]))
    return best, (f"target speedup {value}x is not reached by any {key} on the held-out rows; the best reachable is"
                  f" {best['flops_speedup']:.2f}x ({key} {best[key]}, held-out drop {best['drop_points']} points),"
                  " which is kept")


def curve_csv(curves: dict[str, list[dict]], policy: str, chosen_knob) -> str:
    key = "patience" if policy == "patience" else "threshold"
    columns = ["split", "policy", key, "chosen", "accuracy", "drop_points", "mean_exit_layer", "flops_per_example",
               "flops_speedup"]
    lines = [",".join(columns)]
    for split, points in curves.items():
        for p in points:
            row = [split, policy, p[key], int(p[key] == chosen_knob), p["accuracy"], p["drop_points"],
                   p["mean_exit_layer"], p["flops_per_example"], p["flops_speedup"]]
            lines.append(",".join(str(x) for x in row))
    return "\n".join(lines) + "\n"


# ---- speed --------------------------------------------------------------------------------------


def speed_side_by_side(models: dict, encoded: EncodedSplit, *, pad_token_id: int, examples: int = 256,
                       rounds: int = 2, batch_size: int = 32) -> dict:
    """Throughput (batch ``batch_size``) and latency (batch 1) of each model on the same seeded inputs, in
    alternating rounds in this process; each model keeps its round with the best throughput."""
    inputs = speed_inputs(encoded, max_examples=examples)
    best: dict = {}
    for _ in range(rounds):
        for name, model in models.items():
            report = measure_speed(torch_forward(model), inputs, pad_token_id=pad_token_id, batch_size=batch_size)
            if name not in best or report.throughput_examples_per_s > best[name].throughput_examples_per_s:
                best[name] = report
    return {name: report.to_dict() for name, report in best.items()}


# ---- price tags of the stage's phases ---------------------------------------------------------


class _Costs:
    """Price tags of this stage's phases; kept in work_dir so a resumed run reports what came before."""

    def __init__(self, work_dir: Path):
        self.file = work_dir / "costs.json"
        self.phases: dict[str, dict] = json.loads(self.file.read_text()) if self.file.is_file() else {}

    @contextlib.contextmanager
    def phase(self, name: str):
        from greenlm.measure import PriceTag, PriceTagWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PriceTagWarning)  # the default-PUE note is in the record itself
            tag = PriceTag(f"early_exit:{name}")
            with tag:
                yield
        rec = tag.record
        summary = {"wall_s": round(rec.wall_s, 3), "cpu_s": round(rec.cpu_s, 3), "energy_kwh": rec.energy_kwh,
                   "energy_source": rec.energy_source, "co2e_kg": rec.co2e_kg, "intensity_source": rec.intensity_source}
        before = self.phases.get(name)
        if before:  # a resumed phase: add this part to the earlier one
            summary = {k: before[k] + v if isinstance(v, (int, float)) and isinstance(before.get(k), (int, float)) else v
                       for k, v in summary.items()}
        self.phases[name] = summary
        atomic_write_json(self.file, self.phases)


# ---- the stage ------------------------------------------------------------------------------------


def run(input_dir: Path, task: Task, config: EarlyExitConfig, out_dir: Path, *, work_dir: Path, progress: bool = True,
        on_note=print, teacher_dir: Path | None = None, extra_json: dict | None = None) -> dict:
    """The ``early_exit`` stage: add exits to the model in ``input_dir``; write the result to ``out_dir``.

    ``out_dir`` is written atomically (model, ``metrics.json``, ``curve.json``, ``curve.csv`` and the files of
    ``extra_json``) and loads with ``greenlm.models.load_classifier``. Training checkpoints live in
    ``work_dir``: running the stage again resumes. ``teacher_dir`` is not used (self-distillation learns from
    the model's own final classifier). Returns the metrics.
    """
    input_dir, out_dir, work_dir = Path(input_dir), Path(out_dir), Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []

    def note(message: str) -> None:
        notes.append(message)
        on_note(message)

    loaded = load_classifier(str(input_dir))
    upstream, tokenizer = loaded.model, loaded.tokenizer
    archs = getattr(upstream.config, "architectures", None) or []
    if not any(a.endswith("ForSequenceClassification") for a in archs):
        raise GreenlmError(f"model '{input_dir}' is not a fine-tuned sequence classifier; fine-tune it first"
                           " (greenlm train) and add exits to that folder")
    torch.manual_seed(config.seed)  # exit heads' initialisation
    model = EarlyExitClassifier(upstream, config.exit_layers, pooling=config.exit_pooling,
                                tokenizer=tokenizer)  # refuses bad layers / models now
    if config.exit_layers is not None and model.num_layers not in config.exit_layers:
        note(f"the last layer ({model.num_layers}) always has an exit (the model's own classifier); exits: {list(model.exit_layers)}")
    if len(model.exit_layers) == 1:
        note("only the last layer has an exit: no input can leave early")
    saved = dict(getattr(upstream.config, "greenlm", None) or {})
    max_length = config.max_length or saved.get("max_length") or 128
    if max_length > model_max_length(upstream.config):
        raise GreenlmError(f"max_length {max_length} is above what the model's positions allow"
                           f" ({model_max_length(upstream.config)})")
    labels = list(loaded.labels)
    name = str(input_dir)
    train_split = align_labels(task.split("train"), task, labels, name)
    fit_split, heldout_split = split_heldout(train_split, config.heldout_fraction, config.heldout_max_examples,
                                             config.seed)
    if config.train_subset is not None:
        fit_split = fit_split.subset(config.train_subset, seed=config.seed)
    pad = tokenizer.pad_token_id
    fit_data = encode_split(fit_split, tokenizer, max_length)
    heldout_data = encode_split(heldout_split, tokenizer, max_length)
    others = {n: align_labels(s, task, labels, name) for n, s in task.splits.items()
              if n != "train" and s.labels and min(s.labels) != UNLABELED}
    encoded = {n: encode_split(s, tokenizer, max_length) for n, s in others.items()}
    costs_log = _Costs(work_dir)

    # The upstream model on every labelled split, before training changes its weights.
    upstream_splits = {n: evaluate(upstream, e, pad_token_id=pad, num_labels=len(labels)) for n, e in encoded.items()}

    train_final = config.train_encoder
    if not config.train_encoder:
        model.freeze_encoder()
        if len(model.exit_layers) == 1:
            raise GreenlmError("with a frozen encoder and no exit before the last layer there is nothing to train;"
                               " add exit layers or train the encoder")
    tconfig = config.train_config()
    with costs_log.phase("train"):
        result = train(model, fit_data, None, tconfig, pad_token_id=pad, work_dir=work_dir / "train",
                       loss_fn=_loss_fn(config, model.exit_layers, train_final), progress=progress,
                       description=f"early exits {task.name}", lr_scale=config.lr_scale())
    model.eval()

    with costs_log.phase("calibrate"):
        held_logits = collect_exit_logits(model, heldout_data, pad_token_id=pad)
        held_labels = torch.tensor(heldout_data.labels)
        temperatures, calibration = calibrate(held_logits, held_labels, model.exit_layers)
        model.set_temperatures(temperatures)
        costs = measure_exit_costs(model)
        goal, value = config.goal()
        knobs = candidate_knobs(held_logits, temperatures, config.policy)
        if goal in ("threshold", "patience") and value not in knobs:
            knobs = sorted(set(knobs) | {value})
        held_lengths = torch.tensor(heldout_data.lengths())
        held_curve = operating_curve(held_logits, held_labels, held_lengths, costs, model.exit_layers, temperatures,
                                     config.policy, knobs)
        chosen, selection_note = select_point(held_curve, goal, value, config.policy)
        if selection_note:
            note(selection_note)
        key = "patience" if config.policy == "patience" else "threshold"
        model.set_policy(config.policy, **{key: chosen[key]})

    with costs_log.phase("evaluate"):
        splits, details_by_split, curves = {}, {}, {"heldout": held_curve}
        for split_name, data in encoded.items():
            exit_logits = collect_exit_logits(model, data, pad_token_id=pad)
            split_labels = torch.tensor(data.labels)
            lengths = torch.tensor(data.lengths())
            curves[split_name] = operating_curve(exit_logits, split_labels, lengths, costs, model.exit_layers,
                                                 temperatures, config.policy, knobs)
            logits, exit_layers = predict_outputs(model, data, pad_token_id=pad)  # real batched early exit
            splits[split_name] = classification_metrics(data.labels, logits.argmax(-1).tolist(), len(labels))
            details_by_split[split_name] = _split_details(model, costs, exit_logits, split_labels, lengths, exit_layers,
                                                          splits[split_name], upstream_splits[split_name])
            for entry, row in zip(calibration, exit_logits):
                entry[f"{split_name}_accuracy"] = round(float((row.argmax(-1) == split_labels).double().mean()), 6)
                entry[f"{split_name}_nll_before"] = round(nll(row, split_labels), 5)
                entry[f"{split_name}_nll_after"] = round(nll(row, split_labels, entry["temperature"]), 5)

    speed = None
    if config.measure_speed and "dev" in encoded:
        with costs_log.phase("speed"):
            reference = load_classifier(str(input_dir)).model  # the upstream model as it was
            timed = speed_side_by_side({"upstream": reference, "early_exit": model}, encoded["dev"], pad_token_id=pad,
                                       examples=config.speed_examples)
            up, ee = timed["upstream"], timed["early_exit"]
            speed = {
                **timed,
                "throughput_speedup": round(ee["throughput_examples_per_s"] / up["throughput_examples_per_s"], 4),
                "latency_p50_speedup": round(up["latency_ms_p50"] / ee["latency_ms_p50"], 4),
                "protocol": "greenlm.models.measure_speed on a seeded sample of dev, both models in this process,"
                            " 2 alternating rounds, best throughput of each",
            }
            del reference

    model.set_backbone_info(task=task.name, labels=labels, max_length=max_length)
    chosen_knob = chosen[key]
    details = {
        "exit_layers": list(model.exit_layers),
        "num_layers": model.num_layers,
        "policy": config.policy,
        "exit_pooling": config.exit_pooling,
        key: chosen_knob,
        "goal": {"kind": goal, "value": value, "note": selection_note},
        "heldout": {"examples": len(heldout_data), "from": "train", "fraction": config.heldout_fraction,
                    "chosen_point": chosen},
        "splits": details_by_split,
        "upstream": {"model": name, "splits": upstream_splits},
        "calibration": calibration,
        "speed": speed,
        "flops_convention": "matmul (2 per multiply-add of every matrix product run; greenlm.measure.count_flops)",
        "train": {
            "examples": len(fit_data), "steps": result.state.step, "encoder_trained": config.train_encoder,
            "loss": config.loss, "learning_rate": config.learning_rate if config.train_encoder else None,
            "exit_learning_rate": config.exit_learning_rate, "precision": result.precision,
            "train_seconds": round(result.state.train_seconds, 3),
            "train_examples_per_s": round(result.train_examples_per_s, 2),
        },
        "cost": costs_log.phases,
        "curve_files": [CURVE_JSON, CURVE_CSV],
        "config": config.to_dict(),
        "notes": notes,
    }
    metrics = {"task": task.name, "model": f"{name} + early exits", "method": METHOD, "splits": splits, METHOD: details}
    curve = {"policy": config.policy, "knob": key, "chosen": chosen_knob, "goal": details["goal"],
             "exit_layers": list(model.exit_layers), "temperatures": [round(t, 6) for t in temperatures],
             "curves": curves}
    import accelerate.state

    if accelerate.state.PartialState().is_main_process:
        save_early_exit(model, tokenizer, out_dir, {METRICS_FILE: metrics, CURVE_JSON: curve, **(extra_json or {})},
                        {CURVE_CSV: curve_csv(curves, config.policy, chosen_knob)})
    accelerate.state.PartialState().wait_for_everyone()
    return metrics


def _split_details(model, costs: ExitCosts, exit_logits, labels, lengths, exit_layers, metrics: dict,
                   upstream: dict) -> dict:
    """What early exit did on one split: exits per layer, FLOPs, accuracy vs full depth and vs upstream."""
    flops = costs.exit_flops(lengths, exit_layers, heads_run=model.exits_early())
    full = costs.full_flops(lengths)
    full_depth = float((exit_logits[-1].argmax(-1) == labels).double().mean())
    key = "patience" if model.policy == "patience" else "threshold"
    simulated = simulate_exits(exit_logits, model.temperatures, model.policy,
                               **_knob_kwargs(model.policy, getattr(model, key)))
    return {
        "accuracy": metrics["accuracy"],
        "accuracy_full_depth": round(full_depth, 6),
        "accuracy_upstream": upstream["accuracy"],
        "drop_points_vs_full_depth": round(100 * (full_depth - metrics["accuracy"]), 4),
        "drop_points_vs_upstream": round(100 * (upstream["accuracy"] - metrics["accuracy"]), 4),
        "mean_exit_layer": round(float(exit_layers.double().mean()), 4),
        "exit_share": {str(layer): round(float((exit_layers == layer).double().mean()), 4) for layer in model.exit_layers},
        "flops_per_example": round(float(flops.mean()), 1),
        "flops_per_example_without_exits": round(float(full.mean()), 1),
        "flops_speedup": round(float(full.sum() / flops.sum()), 4),
        # the offline rule used for the curves against the real batched pass: 1.0 unless rounding flips a tie
        "curve_agreement": round(float((torch.tensor(model.exit_layers)[simulated] == exit_layers).double().mean()), 6),
    }


# ---- the command's flow: an output folder that resumes ----------------------------------------------


@dataclass
class EarlyExitOutcome:
    out_dir: Path
    metrics: dict
    reused: bool  # the folder already held this finished run


def early_exit_model(model_spec: str, task: Task, out_dir: str | Path, config: EarlyExitConfig, *, progress: bool = True,
                     on_note=print) -> EarlyExitOutcome:
    """``greenlm early-exit``: run the stage into ``out_dir``; the same command again resumes or reuses it."""
    from greenlm.train.finetune import RUN_FILE, WORK_DIR, prepare_out_dir

    out_dir = Path(out_dir)
    source = resolve_model_source(model_spec)
    if source.kind != "local":
        raise GreenlmError(f"early exit needs a fine-tuned model folder (from greenlm train or a stage), got '{model_spec}'")
    input_dir = Path(source.location)
    weights = next((input_dir / f for f in ("model.safetensors", "model.safetensors.index.json")
                    if (input_dir / f).is_file()), None)
    identity = {
        "task": task.name,
        "task_fingerprint": task.fingerprint(),
        "model": str(input_dir),
        "model_weights_sha256": sha256_file(weights) if weights is not None else None,
        "method": METHOD,
        METHOD: config.to_dict(),
        "greenlm_version": greenlm.__version__,
    }
    finished = prepare_out_dir(out_dir, identity)
    if finished is not None:
        return EarlyExitOutcome(out_dir, finished, reused=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / RUN_FILE, identity)
    metrics = run(input_dir, task, config, out_dir, work_dir=out_dir / WORK_DIR, progress=progress, on_note=on_note,
                  extra_json={RUN_FILE: identity})
    return EarlyExitOutcome(out_dir, metrics, reused=False)
