"""Early exit as a compression stage: train exits, calibrate them, pick the threshold for the user's goal.

    config = EarlyExitConfig(max_drop=1.0)          # or target_speedup=3.0, or threshold=0.9
    result = greenlm.stage.run_stage("early_exit", model_dir, task, config, out_dir)

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
     side with ``greenlm.runtime.side_by_side``.

Held-out rows and the upstream model: a teacher fine-tuned on the whole training split has seen them,
so its held-out accuracy flatters it. The held-out rows only compare thresholds of one model with each
other: the drop is taken against that model's full depth on the same rows. Dev gives the figures.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from greenlm.compress.early_exit_config import EarlyExitConfig, LOSSES, DEFAULT_MAX_DROP  # noqa: F401 (re-exported)
from greenlm.common import GreenlmError
from greenlm.data import EncodedSplit, TaskSplit, collate, encode_split, length_grouped_batches
from greenlm.models.loading import is_sequence_classifier
from greenlm.models.early_exit import (EarlyExitClassifier, ExitCosts, exit_confidence, measure_exit_costs,
                                       policy_exits_early, save_early_exit, simulate_exits)
from greenlm.runtime import predict_outputs, side_by_side, speed_inputs, torch_forward
from greenlm.stage import StageContext, StageOutput
from greenlm.train import classification_metrics, evaluate, train

METHOD = "early_exit"
CURVE_JSON = "curve.json"
CURVE_CSV = "curve.csv"
CALIBRATION_BINS = 15  # ECE bins




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


# ---- the stage ------------------------------------------------------------------------------------


def run(ctx: StageContext, config: EarlyExitConfig) -> StageOutput:
    """The ``early_exit`` method: add exits to the model in ``ctx.input_dir``, calibrate them, pick the point.

    The output folder holds the model with its exits (loads with ``greenlm.models.load_classifier``),
    ``curve.json`` and ``curve.csv``. Training checkpoints live in ``ctx.work_dir``. The fine-tuned
    teacher is not used: self-distillation learns from the model's own final classifier.
    """
    loaded = ctx.load_input()
    upstream, tokenizer = loaded.model, loaded.tokenizer
    if not is_sequence_classifier(upstream.config):
        raise GreenlmError(f"model '{ctx.source}' is not a fine-tuned sequence classifier; fine-tune it first"
                           " (greenlm train) and add exits to that folder")
    torch.manual_seed(config.seed)  # exit heads' initialisation
    model = EarlyExitClassifier(upstream, config.exit_layers, pooling=config.exit_pooling,
                                tokenizer=tokenizer)  # refuses bad layers / models now
    if config.exit_layers is not None and model.num_layers not in config.exit_layers:
        ctx.note(f"the last layer ({model.num_layers}) always has an exit (the model's own classifier);"
                 f" exits: {list(model.exit_layers)}")
    if len(model.exit_layers) == 1:
        ctx.note("only the last layer has an exit: no input can leave early")
    max_length = ctx.max_length(upstream, config.max_length, tokenizer)
    labels = list(loaded.labels)
    name = ctx.source
    train_split = ctx.align(ctx.task.split("train"), labels, name)
    fit_split, heldout_split = split_heldout(train_split, config.heldout_fraction, config.heldout_max_examples,
                                             config.seed)
    if config.train_subset is not None:
        fit_split = fit_split.subset(config.train_subset, seed=config.seed)
    pad = tokenizer.pad_token_id
    fit_data = encode_split(fit_split, tokenizer, max_length)
    heldout_data = encode_split(heldout_split, tokenizer, max_length)
    encoded = {n: encode_split(s, tokenizer, max_length) for n, s in ctx.labelled_splits(labels, name).items()}

    # The upstream model on every labelled split, before training changes its weights.
    upstream_splits = {n: evaluate(upstream, e, pad_token_id=pad, num_labels=len(labels)) for n, e in encoded.items()}

    train_final = config.train_encoder
    if not config.train_encoder:
        model.freeze_encoder()
        if len(model.exit_layers) == 1:
            raise GreenlmError("with a frozen encoder and no exit before the last layer there is nothing to train;"
                               " add exit layers or train the encoder")
    with ctx.phase("train"):
        result = train(model, fit_data, None, config.train_config(), pad_token_id=pad, work_dir=ctx.work_dir / "train",
                       loss_fn=_loss_fn(config, model.exit_layers, train_final), progress=ctx.progress,
                       description=f"early exits {ctx.task.name}", lr_scale=config.lr_scale())
    model.eval()

    with ctx.phase("calibrate"):
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
            ctx.note(selection_note)
        key = "patience" if config.policy == "patience" else "threshold"
        model.set_policy(config.policy, **{key: chosen[key]})

    with ctx.phase("evaluate"):
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
    if config.measure_speed and ctx.task.eval_split in encoded:
        with ctx.phase("speed"):
            reference = ctx.load_input().model  # the upstream model as it was
            speed = side_by_side({"upstream": torch_forward(reference), "early_exit": torch_forward(model)},
                                 speed_inputs(encoded[ctx.task.eval_split], max_examples=config.speed_examples), pad_token_id=pad,
                                 reference="upstream")
            speed.update(throughput_speedup=speed["early_exit"]["throughput_speedup"],
                         latency_p50_speedup=speed["early_exit"]["latency_p50_speedup"])
            del reference

    model.set_backbone_info(task=ctx.task.name, labels=labels, max_length=max_length)
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
        "selection": {"split": "heldout", "examples": len(heldout_data), "from": "train",
                      "chose": "exit threshold and calibration temperatures"},
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
        "curve_files": [CURVE_JSON, CURVE_CSV],
        "config": config.to_dict(),
    }
    curve = {"policy": config.policy, "knob": key, "chosen": chosen_knob, "goal": details["goal"],
             "exit_layers": list(model.exit_layers), "temperatures": [round(t, 6) for t in temperatures],
             "curves": curves}
    return StageOutput(
        metrics={"splits": splits, METHOD: details}, model_name=f"{name} + early exits",
        write=lambda folder: save_early_exit(model, tokenizer, folder, {CURVE_JSON: curve},
                                             {CURVE_CSV: curve_csv(curves, config.policy, chosen_knob)}))


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
