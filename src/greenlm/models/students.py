"""Student architectures for distillation: shapes, layer maps, initialisation from the teacher, vocabulary trimming.

A student is the teacher's own model class (e.g. ``BertForSequenceClassification``) with fewer or
narrower layers, so it saves, loads and runs like any Hugging Face classifier.

Shapes are written ``LxH[xA[xF]]`` (layers x hidden [x heads [x FFN]]): ``4x312`` is TinyBERT-4's
shape (Jiao et al. 2020), ``2x256`` a two-layer narrow student. Heads and FFN, when not given, follow
the teacher (``derive_heads``, FFN = hidden x the teacher's FFN/hidden ratio).

Layer maps (which teacher layer each student layer imitates, and starts from) use hidden-state
numbers: 0 = the embedding output, k = the output of teacher layer k (1-based), as in TinyBERT's
g(m). ``uniform``: g(m) = round(m * N / M) (TinyBERT's default, the last layer maps to the last);
``bottom``: g(m) = m (Sajjad et al. 2020 found dropping the top layers a strong baseline);
``top``: g(m) = N - M + m; or an explicit list ``2,4,6``.

Initialisation (``init_from_teacher``): student layer m starts as a copy of teacher layer g(m) (the
layer it will be trained to imitate, so the intermediate losses start near zero where widths agree;
DistilBERT does the same with every other layer of BERT). Where the student is narrower, each weight
is the teacher's weight restricted to the most important coordinates ("weight selection",
Xu et al. 2024, "Initializing Models with Larger Ones"), chosen consistently:
  - residual stream (hidden) dimensions R: the same subset everywhere (embeddings, every layer, every
    LayerNorm, pooler, head), ranked by the teacher's mean squared hidden state on task data
    (``residual_dim_scores``), or by the LayerNorm gains when no data is given;
  - attention heads: the heads with the largest ||W_V,h|| * ||W_O,h||;
  - within a head, query/key dimensions by ||W_Q,d|| * ||W_K,d|| and value/output dimensions by
    ||W_V,d|| * ||W_O,d|| (independent channels: q.k and v->o never mix); W_Q is scaled by
    sqrt(d_s / d_t) so the student's scores q.k / sqrt(d_s) equal the teacher's partial sums / sqrt(d_t);
  - FFN neurons by ||W_in,n|| * ||W_out,n||.
Coordinates the teacher lacks (a wider student) keep their random initialisation.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import torch

from greenlm.common import GreenlmError
from greenlm.models.limits import check_parameters, check_sizes, encoder_parameters

# model types whose parameters follow BERT's names (embeddings / encoder.layer.N / pooler / classifier)
BERT_STYLE = ("bert", "roberta", "xlm-roberta", "camembert", "electra")
_SHAPE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)(?:\s*x\s*(\d+))?(?:\s*x\s*(\d+))?\s*$", re.IGNORECASE)
_LAYER_PARAM = re.compile(r"^(?P<pre>.*\.layer\.)(?P<i>\d+)\.(?P<post>.+)$")


# ---- shapes ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudentShape:
    layers: int
    hidden: int
    heads: int
    ffn: int

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def describe(self) -> str:
        return f"{self.layers}x{self.hidden}x{self.heads}x{self.ffn}"

    def to_dict(self) -> dict:
        return {**asdict(self), "spec": self.describe()}


def is_shape_spec(spec: str) -> bool:
    return bool(_SHAPE.match(spec))


def derive_heads(hidden: int, teacher_hidden: int, teacher_heads: int) -> int:
    """Heads for a student of width ``hidden``.

    1. The teacher's head width when it divides ``hidden`` (whole teacher heads can then be copied);
    2. else the teacher's head count when it divides ``hidden`` (TinyBERT-4: 312 = 12 x 26);
    3. else the divisor of ``hidden`` with heads of >= 8 dims closest to the teacher's head count
       (ties: fewer, wider heads).
    """
    teacher_head_dim = teacher_hidden // teacher_heads
    if hidden % teacher_head_dim == 0:
        return hidden // teacher_head_dim
    if hidden % teacher_heads == 0:
        return teacher_heads
    divisors = [a for a in range(1, hidden + 1) if hidden % a == 0 and hidden // a >= 8] or [1]
    return min(divisors, key=lambda a: (abs(a - teacher_heads), a))


def parse_student_shape(spec: str, teacher_config) -> StudentShape:
    """``LxH[xA[xF]]`` -> a shape; heads and FFN follow the teacher when not given."""
    match = _SHAPE.match(spec)
    if not match:
        raise GreenlmError(
            f"student shape '{spec}' is not LAYERSxHIDDEN[xHEADS[xFFN]] (e.g. 4x312, 2x256, 4x312x12x1200)"
        )
    layers, hidden = int(match[1]), int(match[2])
    if layers < 1 or hidden < 8:
        raise GreenlmError(f"student shape '{spec}': need at least 1 layer and a hidden size of at least 8")
    t_hidden, t_heads = teacher_config.hidden_size, teacher_config.num_attention_heads
    heads = int(match[3]) if match[3] else derive_heads(hidden, t_hidden, t_heads)
    if heads < 1 or hidden % heads:
        raise GreenlmError(f"student shape '{spec}': hidden size {hidden} is not divisible by {heads} heads")
    ratio = teacher_config.intermediate_size / t_hidden
    ffn = int(match[4]) if match[4] else int(round(hidden * ratio))
    if ffn < 1:
        raise GreenlmError(f"student shape '{spec}': FFN size must be at least 1")
    what = f"student shape '{spec}'"
    check_sizes(what, layers=layers, hidden=hidden, heads=heads, ffn=ffn)
    check_parameters(what, encoder_parameters(layers, hidden, ffn, teacher_config.vocab_size,
                                              getattr(teacher_config, "max_position_embeddings", 512)))
    return StudentShape(layers, hidden, heads, ffn)


def teacher_shape(teacher_config) -> StudentShape:
    c = teacher_config
    return StudentShape(c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size)


def check_bert_style(config, what: str) -> None:
    model_type = getattr(config, "model_type", "?")
    if model_type not in BERT_STYLE:
        raise GreenlmError(
            f"{what} is a '{model_type}' model; distillation students are built for BERT-style encoders"
            f" ({', '.join(BERT_STYLE)})"
        )
    if model_type == "electra" and getattr(config, "embedding_size", config.hidden_size) != config.hidden_size:
        raise GreenlmError(f"{what} is an ELECTRA model with a factorised embedding; it is not supported as a teacher")


def student_config(teacher_config, shape: StudentShape, *, keep_token_ids: Sequence[int] | None = None):
    """The teacher's config with the student's shape (and, after trimming, its vocabulary's size and ids)."""
    config = copy.deepcopy(teacher_config)
    config.num_hidden_layers = shape.layers
    config.hidden_size = shape.hidden
    config.num_attention_heads = shape.heads
    config.intermediate_size = shape.ffn
    if getattr(config, "model_type", "") == "electra":
        config.embedding_size = shape.hidden
    if keep_token_ids is not None:
        config.vocab_size = len(keep_token_ids)
        remap_special_ids(config, keep_token_ids)
    for stale in ("greenlm", "greenlm_heads_per_layer", "greenlm_intermediate_per_layer", "pruned_heads"):
        if hasattr(config, stale):
            delattr(config, stale)
    config._name_or_path = ""
    return config


# ---- layer maps --------------------------------------------------------------------------------------

LAYER_MAPS = ("uniform", "bottom", "top")


def resolve_layer_map(spec: str, student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher hidden-state number g(m) for each student layer m = 1..M (0 = embeddings)."""
    m_layers, n_layers = student_layers, teacher_layers
    spec = spec.strip().lower()
    if spec in LAYER_MAPS and m_layers > n_layers:
        raise GreenlmError(
            f"layer map '{spec}' needs a student with at most the teacher's {n_layers} layers (it has {m_layers});"
            " give an explicit map such as '1,2,3,...'"
        )
    if spec == "uniform":
        return [math.floor(m * n_layers / m_layers + 0.5) for m in range(1, m_layers + 1)]
    if spec == "bottom":
        return list(range(1, m_layers + 1))
    if spec == "top":
        return list(range(n_layers - m_layers + 1, n_layers + 1))
    try:
        layers = [int(part) for part in spec.split(",") if part.strip()]
    except ValueError:
        raise GreenlmError(
            f"layer map '{spec}' is not {', '.join(LAYER_MAPS)} or a comma list of teacher layers (e.g. 2,4,6)"
        ) from None
    if len(layers) != m_layers:
        raise GreenlmError(
            f"layer map '{spec}' names {len(layers)} teacher layers, but the student has {m_layers} layers"
        )
    bad = [g for g in layers if not 1 <= g <= n_layers]
    if bad:
        raise GreenlmError(f"layer map '{spec}': teacher layers must be in 1..{n_layers}, got {bad}")
    if layers != sorted(layers):
        raise GreenlmError(f"layer map '{spec}' must not go backwards (student layer m imitates a layer at or above m-1's)")
    return layers


# ---- initialisation ----------------------------------------------------------------------------------


def build_student(teacher, shape: StudentShape, *, init: str, layer_map: Sequence[int],
                  keep_token_ids: Sequence[int] | None = None, dim_scores: torch.Tensor | None = None,
                  seed: int = 0):
    """A new student of ``shape``, the teacher's class: random, or initialised from the teacher.

    ``layer_map[m-1]`` is the teacher layer (1-based) student layer m is copied from. ``keep_token_ids``
    (vocabulary trimming): student token i is teacher token keep_token_ids[i]. ``dim_scores`` [hidden]
    ranks the teacher's residual dimensions (see module docstring).
    """
    if init not in ("teacher", "random"):
        raise GreenlmError(f"student init '{init}' is not 'teacher' or 'random'")
    config = student_config(teacher.config, shape, keep_token_ids=keep_token_ids)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        student = type(teacher)(config)
    if init == "teacher":
        check_bert_style(teacher.config, "the teacher")
        init_from_teacher(student, teacher, layer_map, keep_token_ids=keep_token_ids, dim_scores=dim_scores)
    student.eval()
    return student


@torch.no_grad()
def residual_dim_scores(model, batches: Iterable[dict]) -> torch.Tensor:
    """Mean squared value of each hidden dimension over all layers' outputs and real tokens: [hidden]."""
    was_training = model.training
    model.eval()
    total = torch.zeros(model.config.hidden_size, dtype=torch.float64)
    count = 0
    for batch in batches:
        batch = {k: v for k, v in batch.items() if k != "labels"}
        out = model(**batch, output_hidden_states=True)
        mask = batch["attention_mask"].bool()  # [B, T]
        for hidden in out.hidden_states:  # each [B, T, h]
            total += hidden[mask].double().pow(2).sum(0)
            count += int(mask.sum())
    model.train(was_training)
    if count == 0:
        raise GreenlmError("no tokens to rank the teacher's hidden dimensions with")
    return (total / count).float()


def _layernorm_scores(teacher) -> torch.Tensor:
    """Data-free ranking of residual dimensions: summed |gain| of every LayerNorm on the residual stream."""
    scores = torch.zeros(teacher.config.hidden_size)
    for name, param in teacher.named_parameters():
        if name.endswith("LayerNorm.weight") and param.shape == scores.shape:
            scores += param.detach().abs()
    return scores


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` largest scores, in ascending index order (k capped at the length)."""
    k = min(k, scores.numel())
    return torch.topk(scores, k).indices.sort().values


@torch.no_grad()
def init_from_teacher(student, teacher, layer_map: Sequence[int], *, keep_token_ids: Sequence[int] | None = None,
                      dim_scores: torch.Tensor | None = None) -> dict:
    """Copy (and, where narrower, select from) the teacher's weights into ``student``; returns the plan used."""
    t_cfg, s_cfg = teacher.config, student.config
    if len(layer_map) != s_cfg.num_hidden_layers:
        raise GreenlmError(f"layer map has {len(layer_map)} entries for a {s_cfg.num_hidden_layers}-layer student")
    if max(layer_map) > t_cfg.num_hidden_layers or min(layer_map) < 1:
        raise GreenlmError(f"layer map {list(layer_map)} does not fit a {t_cfg.num_hidden_layers}-layer teacher")
    teacher_params = dict(teacher.named_parameters())
    h_t, h_s = t_cfg.hidden_size, s_cfg.hidden_size
    scores = dim_scores if dim_scores is not None else _layernorm_scores(teacher)
    residual = _top(scores, h_s) if h_s < h_t else torch.arange(h_t)
    tokens = torch.as_tensor(list(keep_token_ids)) if keep_token_ids is not None else None
    plans = {}
    for name, param in student.named_parameters():
        match = _LAYER_PARAM.match(name)
        if match:
            t_layer = layer_map[int(match["i"])] - 1
            t_name = f"{match['pre']}{t_layer}.{match['post']}"
            if t_layer not in plans:
                plans[t_layer] = _layer_plan(teacher_params, match["pre"], t_layer, residual, s_cfg, t_cfg)
            index, scale = _layer_param_index(match["post"], residual, plans[t_layer])
        else:
            t_name = name
            index, scale = _outer_param_index(name, residual, tokens)
        if t_name not in teacher_params:
            raise GreenlmError(f"cannot initialise the student from the teacher: it has no parameter '{t_name}'")
        _copy_selected(param, teacher_params[t_name], index, scale)
    return {
        "residual_dims": residual.tolist() if h_s < h_t else "all",
        "layers_copied": list(layer_map),
        "heads_kept": {t + 1: plan["heads"].tolist() for t, plan in sorted(plans.items())},
    }


def _layer_plan(params: dict, prefix: str, layer: int, residual: torch.Tensor, s_cfg, t_cfg) -> dict:
    """Which heads, head dimensions and FFN neurons of teacher ``layer`` the student keeps."""
    p = lambda suffix: params[f"{prefix}{layer}.{suffix}"].detach()  # noqa: E731
    a_t, a_s = t_cfg.num_attention_heads, s_cfg.num_attention_heads
    d_t, d_s = t_cfg.hidden_size // a_t, s_cfg.hidden_size // a_s
    if d_s > d_t:
        raise GreenlmError(
            f"the student's heads ({d_s} dims) are wider than the teacher's ({d_t}); give more heads in the shape"
            " (LxHxA) or use init 'random'"
        )
    wq, wk, wv = (p(f"attention.self.{n}.weight")[:, residual] for n in ("query", "key", "value"))  # [A_t*d_t, h_s]
    wo = p("attention.output.dense.weight")[residual, :]  # [h_s, A_t*d_t]
    row = lambda w: w.reshape(a_t, d_t, -1).norm(dim=-1)  # noqa: E731  per (head, dim) row norms [A_t, d_t]
    qk = row(wq) * row(wk)
    vo = row(wv) * wo.norm(dim=0).reshape(a_t, d_t)
    heads = _top(vo.pow(2).sum(-1), a_s)  # by the head's value->output strength
    qk_index, vo_index = [], []
    for h in heads.tolist():
        qk_index.append(h * d_t + _top(qk[h], d_s))
        vo_index.append(h * d_t + _top(vo[h], d_s))
    w_in = p("intermediate.dense.weight")[:, residual]  # [f_t, h_s]
    w_out = p("output.dense.weight")[residual, :]  # [h_s, f_t]
    ffn = _top(w_in.norm(dim=1) * w_out.norm(dim=0), s_cfg.intermediate_size)
    return {
        "heads": heads,
        "qk": torch.cat(qk_index),
        "vo": torch.cat(vo_index),
        "ffn": ffn,
        "q_scale": math.sqrt(d_s / d_t),
    }


def _layer_param_index(post: str, r: torch.Tensor, plan: dict):
    """(per-dimension teacher indices, scale) for a parameter inside a layer, by its name."""
    if post.startswith(("attention.self.query.", "attention.self.key.")):
        scale = plan["q_scale"] if post.startswith("attention.self.query.") else 1.0
        return ((plan["qk"], r) if post.endswith("weight") else (plan["qk"],)), scale
    if post.startswith("attention.self.value."):
        return ((plan["vo"], r) if post.endswith("weight") else (plan["vo"],)), 1.0
    if post == "attention.output.dense.weight":
        return (r, plan["vo"]), 1.0
    if post == "intermediate.dense.weight":
        return (plan["ffn"], r), 1.0
    if post == "intermediate.dense.bias":
        return (plan["ffn"],), 1.0
    if post == "output.dense.weight":
        return (r, plan["ffn"]), 1.0
    if post in ("attention.output.dense.bias", "output.dense.bias") or "LayerNorm" in post:
        return (r,), 1.0
    raise GreenlmError(f"cannot initialise the student from the teacher: unknown layer parameter '{post}'")


def _outer_param_index(name: str, r: torch.Tensor, tokens: torch.Tensor | None):
    """Indices for embeddings, pooler and classifier parameters (None = every index of that dim)."""
    if name.endswith("embeddings.word_embeddings.weight"):
        return (tokens, r), 1.0
    if name.endswith(("embeddings.position_embeddings.weight", "embeddings.token_type_embeddings.weight")):
        return (None, r), 1.0
    if "embeddings.LayerNorm" in name or name.endswith(("pooler.dense.bias", "classifier.dense.bias")):
        return (r,), 1.0
    if name.endswith(("pooler.dense.weight", "classifier.dense.weight")):
        return (r, r), 1.0
    if name.endswith(("classifier.weight", "classifier.out_proj.weight")):
        return (None, r), 1.0
    if name.endswith(("classifier.bias", "classifier.out_proj.bias")):
        return (None,), 1.0
    raise GreenlmError(f"cannot initialise the student from the teacher: unknown parameter '{name}'")


def _copy_selected(target: torch.nn.Parameter, source: torch.Tensor, index: tuple, scale: float) -> None:
    """target[:n0, :n1] = source[i0][:, i1] * scale, where n_k = len(i_k) (capped at the target's size)."""
    picked = source.detach()
    for dim, idx in enumerate(index):
        if idx is not None:
            idx = idx[: target.shape[dim]]
            picked = picked.index_select(dim, idx.to(picked.device))
        else:
            picked = picked.narrow(dim, 0, min(picked.shape[dim], target.shape[dim]))
    region = target.data
    for dim, size in enumerate(picked.shape):
        region = region.narrow(dim, 0, size)
    region.copy_(picked * scale)


# ---- vocabulary trimming -------------------------------------------------------------------------------


def trim_vocabulary(tokenizer, texts: Iterable[str], *, keep_characters: bool = True):
    """A tokenizer with only the tokens ``texts`` use (plus specials), and the kept teacher token ids.

    Returns ``(new_tokenizer, kept_ids)``: new token i is old token ``kept_ids[i]``. Every text given
    tokenizes to the same tokens as before (WordPiece takes the longest vocabulary prefix, and every
    piece it took is kept). With ``keep_characters``, single characters seen in the texts are kept as
    both word-initial and ``##`` pieces, so unseen words made of known characters still tokenize
    (into smaller pieces) instead of becoming [UNK]. WordPiece tokenizers (the BERT family) only.
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise GreenlmError("vocabulary trimming needs a fast (Rust) tokenizer")
    state = json.loads(backend.to_str())
    if state["model"]["type"] != "WordPiece":
        raise GreenlmError(
            f"vocabulary trimming supports WordPiece tokenizers (BERT family); this one is {state['model']['type']}"
        )
    vocab: dict[str, int] = state["model"]["vocab"]
    prefix = state["model"].get("continuing_subword_prefix", "##")
    used: set[int] = set(tokenizer.all_special_ids)
    used.update(a["id"] for a in state.get("added_tokens", []))
    chars: set[str] = set()
    for encoding in backend.encode_batch(list(texts), add_special_tokens=True):
        used.update(encoding.ids)
        if keep_characters:
            for token in encoding.tokens:
                chars.update(token[len(prefix):] if token.startswith(prefix) else token)
    for char in chars:
        for piece in (char, prefix + char):
            if piece in vocab:
                used.add(vocab[piece])
    kept_ids = sorted(used)
    old_to_new = {old: new for new, old in enumerate(kept_ids)}
    by_id = {i: t for t, i in vocab.items()}
    state["model"]["vocab"] = {by_id[old]: new for new, old in enumerate(kept_ids)}
    for added in state.get("added_tokens", []):
        added["id"] = old_to_new[added["id"]]
    _renumber_post_processor(state.get("post_processor"), old_to_new)
    new_backend = Tokenizer.from_str(json.dumps(state))
    specials = {k: getattr(tokenizer, k) for k in ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
                if getattr(tokenizer, k, None) is not None}
    new = PreTrainedTokenizerFast(
        tokenizer_object=new_backend, model_max_length=tokenizer.model_max_length,
        model_input_names=list(tokenizer.model_input_names), padding_side=tokenizer.padding_side, **specials,
    )
    return new, kept_ids


def _renumber_post_processor(processor: dict | None, old_to_new: dict[int, int]) -> None:
    if not processor:
        return
    if processor.get("type") == "Sequence":
        for inner in processor.get("processors", []):
            _renumber_post_processor(inner, old_to_new)
        return
    for special in (processor.get("special_tokens") or {}).values():
        if isinstance(special, dict) and "ids" in special:
            special["ids"] = [old_to_new[i] for i in special["ids"]]
    for key in ("sep", "cls"):  # BertProcessing / RobertaProcessing: [token, id]
        if isinstance(processor.get(key), list) and len(processor[key]) == 2:
            processor[key][1] = old_to_new[processor[key][1]]


# ---- choosing a shape by budget ----------------------------------------------------------------------


def candidate_shapes(teacher_config, *, min_hidden: int = 64) -> list[StudentShape]:
    """Every shape up to the teacher's size: 1..N layers x widths in steps of the teacher's head width."""
    t = teacher_shape(teacher_config)
    step = t.hidden // t.heads
    smallest = min(min_hidden, t.hidden // 4)  # tiny teachers: down to a quarter of their width
    widths = range(max(step, smallest - smallest % step), t.hidden + 1, step)
    return [parse_student_shape(f"{layers}x{hidden}", teacher_config) for layers in range(1, t.layers + 1)
            for hidden in widths]


def rank_shapes_by_budget(teacher_config, seq_len: int, *, target_speedup: float | None = None,
                          max_flops: float | None = None) -> list[tuple[StudentShape, float]]:
    """Shapes within the FLOP budget, best first, with their forward FLOPs per example at ``seq_len``.

    Budget: teacher FLOPs / ``target_speedup`` and/or ``max_flops``. Best = most FLOPs (capacity) within
    the budget; shapes within 5% of each other prefer more layers (depth beats width in TinyBERT and
    MiniLM's ablations at equal cost), then the wider one.
    """
    from greenlm.measure import count_flops

    if target_speedup is None and max_flops is None:
        raise GreenlmError("a budget needs a target speedup or a FLOP limit")
    teacher_flops = count_flops(teacher_config, seq_len).infer_flops_per_example
    budget = min(b for b in (teacher_flops / target_speedup if target_speedup else None, max_flops) if b is not None)
    fitting = []
    for shape in candidate_shapes(teacher_config):
        flops = count_flops(student_config(teacher_config, shape), seq_len).infer_flops_per_example
        if flops <= budget:
            fitting.append((shape, flops))
    if not fitting:
        raise GreenlmError(
            f"no student shape fits {budget:.3g} FLOPs per example at {seq_len} tokens (the teacher needs"
            f" {teacher_flops:.3g}); raise the budget or lower the target speedup"
        )
    best = max(f for _, f in fitting)
    near = sorted((p for p in fitting if p[1] >= 0.95 * best), key=lambda p: (-p[0].layers, -p[0].hidden))
    rest = sorted((p for p in fitting if p[1] < 0.95 * best), key=lambda p: -p[1])
    return near + rest


@torch.no_grad()
def trim_embeddings(model, kept_ids: Sequence[int]) -> None:
    """Keep only the rows ``kept_ids`` of the model's input word embeddings (in that order), in place."""
    old = model.get_input_embeddings()
    rows = old.weight.detach()[torch.as_tensor(list(kept_ids))]
    remap_special_ids(model.config, kept_ids)
    new = torch.nn.Embedding(rows.shape[0], rows.shape[1], padding_idx=model.config.pad_token_id)
    new.weight.copy_(rows)
    model.set_input_embeddings(new)
    model.config.vocab_size = rows.shape[0]


def remap_special_ids(config, kept_ids: Sequence[int]) -> None:
    """Renumber the config's special token ids (pad, bos, eos, sep...) into a trimmed vocabulary."""
    old_to_new = {old: new for new, old in enumerate(kept_ids)}
    for key in ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            setattr(config, key, old_to_new.get(value))
