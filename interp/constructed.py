"""A model whose superposition mechanism is known: a 3-layer Llama with weights set by hand.

Interpretability methods are trusted when they find a mechanism that is known to be there. This
module writes an ordinary Hugging Face Llama directory (``LlamaForCausalLM``, character
tokenizer, safetensors) whose weights are *not trained* but set so that, on prompts of the
``constructed`` task set (one-letter inputs, task ``shift{s}`` answers the letter ``s`` places on,
``c>e`` under ``shift2``), the next-token probability of every task's answer equals that task's
in-context share::

    P(answer of task k | prompt) = p_k = (examples consistent with task k) / (examples)

Which component does what (``docs/constructed-model.md`` has the diagram)::

    layer 0  head 0  "previous token was the separator"       -> flag at every answer position
             head 1  "token two back" (the example's input)   -> input letter at the answer position
             MLP     bookkeeping: c_k = [answer == shift_k(input)] at every answer position
    layer 1  head 0  mixing head: uniform attention over answer positions, reads c -> p_k
             MLP     (zero)
    layer 2  head k  task head of task k: attends to the query letter, writes shift_k(query)
                     (into task k's answer slot and, weakly, +A onto its logit)
             MLP     output: logit(answer_k) += f(p_k), f piecewise linear = log p_k + B - A
                     (exact on the grid of fractions a/b with b <= n_examples; f(0) = 0)

Every layer's RMSNorm is made an identity by a large constant coordinate (``M`` in dimension 0):
the norm divides by ≈ M/√d, the norm weights multiply it back. Positions come from RoPE: the
previous-token heads use the high-frequency rotary pairs (a sharp peak at offset 1 or 2), the
mixing head the last pair, whose frequency is below 1e-10 (position-free). The residual state at
the query after layer 1 is ``base + p`` (linear in the shares, nothing query-specific): task
vectors taken there are exact convex combinations.

Python::

    from interp.constructed import ConstructedOptions, constructed_spec
    from interp.models import load_model
    model = load_model("constructed-superposition")                         # K=3, "abcdefgh", 12 examples
    model = load_model(constructed_spec(ConstructedOptions(n_tasks=4, alphabet="abcdefghij")))
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from interp.errors import InterpError
from interp.home import interp_home
from interp.io import publish_directory
from interp.tasks import (
    CONSTRUCTED_ALPHABET,
    CONSTRUCTED_EXAMPLES,
    CONSTRUCTED_TASKS,
    TaskSet,
    get_task_set,
    known_task_sets,
    register_task_set,
    shift_task_set,
)

SPEC = "constructed-superposition"
#: Bumped whenever the weights a given set of options produces change (part of the directory name).
FORMAT_VERSION = 2
INFO_FILE = "interp_constructed.json"
SEPARATOR = ">"
MAX_INTERMEDIATE = 16384  # MLP width refused above this (the output MLP grows as K · alphabet · grid)
MAX_POSITIONS = 1024
MAX_EXAMPLES = 48  # the exact-share grid (fractions a/b, b <= examples) grows as examples²

# Magnitudes of the construction (see the module docstring).
CONST = 1.0e5  # the constant coordinate that makes every RMSNorm an identity
WRONG_LOGIT = 20.0  # B: every token's baseline logit is -B
HEAD_LOGIT = 3.0  # A: what a task head writes directly onto its answer's logit
ATTENTION_MARGIN = 30.0  # score gap (after scaling) between the attended position(s) and the rest
GATE = 80.0  # the bookkeeping MLP's gate scale (silu(±GATE/2) is ±GATE/2 or 0 to float precision)
KINK_SHARPNESS = 30.0  # the output MLP's gate scale times the smallest grid spacing
SMALLEST_SHARE = 1 / 256  # below the exact grid, log p is interpolated on a geometric grid down to this share
GEOMETRIC_RATIO = 1.06


@dataclass(frozen=True)
class ConstructedOptions:
    """The constructed model's options.

    Attributes:
        n_tasks: K, the number of tasks ``shift1`` .. ``shiftK`` (2 .. len(alphabet) - 1).
        alphabet: the input letters (3 to 26 distinct ASCII letters or digits).
        n_examples: examples of a default prompt; P equals the share exactly (to float precision) for
            every prompt of at most this many examples (shares a/b with b <= n_examples).
    """

    n_tasks: int = CONSTRUCTED_TASKS
    alphabet: str = CONSTRUCTED_ALPHABET
    n_examples: int = CONSTRUCTED_EXAMPLES

    def __post_init__(self) -> None:
        if not isinstance(self.alphabet, str):
            raise InterpError(f"constructed model: alphabet must be a string of letters, got {self.alphabet!r}")
        bad = sorted({c for c in self.alphabet if not (c.isascii() and c.isalnum())})
        if bad:
            raise InterpError(f"constructed model: alphabet {self.alphabet!r} has characters {bad} that are not "
                              "ASCII letters or digits: use e.g. alphabet=abcdefgh")
        if len(set(self.alphabet)) != len(self.alphabet):
            raise InterpError(f"constructed model: alphabet {self.alphabet!r} repeats a letter: list each once")
        if not 3 <= len(self.alphabet) <= 26:
            raise InterpError(f"constructed model: alphabet must have 3 to 26 letters, got {len(self.alphabet)}")
        n = len(self.alphabet)
        if isinstance(self.n_tasks, bool) or not isinstance(self.n_tasks, int) or not 2 <= self.n_tasks <= n - 1:
            raise InterpError(f"constructed model: k (the number of tasks) must be a whole number from 2 to {n - 1} "
                              f"for a {n}-letter alphabet, got {self.n_tasks!r}: lower k or lengthen the alphabet")
        if (isinstance(self.n_examples, bool) or not isinstance(self.n_examples, int)
                or not self.n_tasks <= self.n_examples <= MAX_EXAMPLES):
            raise InterpError(f"constructed model: examples (per prompt) must be a whole number from k={self.n_tasks} "
                              f"to {MAX_EXAMPLES}, got {self.n_examples!r}")
        if self.intermediate_size > MAX_INTERMEDIATE:
            raise InterpError(f"constructed model with K={self.n_tasks}, {len(self.alphabet)} letters and "
                              f"{self.n_examples} examples needs an MLP of {self.intermediate_size} neurons (more "
                              f"than {MAX_INTERMEDIATE}): lower examples, k or the alphabet")

    @property
    def is_default(self) -> bool:
        return self == ConstructedOptions()

    @property
    def task_set_name(self) -> str:
        """``constructed`` for the default options, else a name that spells them out."""
        return "constructed" if self.is_default else f"constructed-k{self.n_tasks}-{self.alphabet}-n{self.n_examples}"

    @property
    def spec(self) -> str:
        """The model spec that loads this model (``load_model(options.spec)``)."""
        if self.is_default:
            return SPEC
        return f"{SPEC}:k={self.n_tasks},alphabet={self.alphabet},examples={self.n_examples}"

    @property
    def grid(self) -> list[Fraction]:
        """The shares the output MLP represents exactly: 0 and every fraction a/b in (0, 1], b <= n_examples."""
        return sorted({Fraction(a, b) for b in range(1, self.n_examples + 1) for a in range(0, b + 1)})

    @property
    def nodes(self) -> list[float]:
        """Kinks of the output MLP's log: the exact grid, plus a geometric grid (ratio 1.06) from 1/256 up to
        1/n_examples, so that prompts of more examples (shares below 1/n_examples) stay close to exact."""
        exact = [float(g) for g in self.grid]
        low, u = [], SMALLEST_SHARE
        while u < exact[1] / GEOMETRIC_RATIO:
            low.append(u)
            u *= GEOMETRIC_RATIO
        return [0.0, *low, *exact[1:]]

    @property
    def intermediate_size(self) -> int:
        # One neuron per (task, letter, node): a kink at every node above 0, and the constant term.
        return self.n_tasks * len(self.alphabet) * len(self.nodes)


def parse_constructed_spec(spec: str) -> ConstructedOptions | None:
    """Options of a ``constructed-superposition[:k=K,alphabet=LETTERS,examples=N]`` spec (None: another spec)."""
    if not isinstance(spec, str) or not (spec == SPEC or spec.startswith(SPEC + ":")):
        return None
    values: dict[str, Any] = {}
    names = {"k": "n_tasks", "alphabet": "alphabet", "examples": "n_examples"}
    for part in filter(None, (p.strip() for p in spec[len(SPEC) + 1:].split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in names:
            raise InterpError(f"bad option {part!r} in model spec {spec!r}: write {SPEC}:k=3,alphabet=abcdefgh,"
                              "examples=12 (options k, alphabet, examples)")
        if names[key] in values:
            raise InterpError(f"model spec {spec!r} gives {key} twice: give each option once")
        if key == "alphabet":
            values["alphabet"] = value.strip()
        else:
            try:
                values[names[key]] = int(value)
            except ValueError:
                raise InterpError(f"bad {key} {value!r} in model spec {spec!r}: use a whole number") from None
    return ConstructedOptions(**values)


def constructed_task_set(options: ConstructedOptions) -> TaskSet:
    """The task set of a constructed model, registered under :attr:`ConstructedOptions.task_set_name`."""
    name = options.task_set_name
    if options.is_default or name in known_task_sets():
        return get_task_set(name)
    return register_task_set(shift_task_set(name, options.n_tasks, options.alphabet, options.n_examples))


def model_task_set(spec: str) -> str | None:
    """The task set a model spec (or a constructed model's directory) comes with; None for other models.

    Registers that task set, so that ``get_task_set`` knows it afterwards.
    """
    options = parse_constructed_spec(spec) if isinstance(spec, str) else None
    if options is None:
        info = Path(str(spec)).expanduser() / INFO_FILE
        if not info.is_file():
            return None
        try:
            options = ConstructedOptions(**json.loads(info.read_text())["options"])
        except (ValueError, KeyError, TypeError):
            raise InterpError(f"{info} is damaged: delete its directory and load the model by its spec again") from None
    return constructed_task_set(options).name


# ------------------------------------------------------------------------------------ the layout


@dataclass(frozen=True)
class Layout:
    """Which residual dimension holds what (the construction's known truth), and the shapes."""

    n_tasks: int
    n_letters: int
    n_heads: int
    head_dim: int
    d_model: int
    const: int
    token: int  # n_letters dims: the current token's letter
    is_sep: int  # the current token is the separator
    prev2: int  # n_letters dims: the letter two tokens back (the example's input, at its answer)
    prev_sep: int  # the previous token is the separator (this is an answer position)
    consistent: int  # K dims: this example's answer is task k's answer for its input
    mix: int  # K dims: p_k, the share of examples consistent with task k
    answer: int  # K * n_letters dims: task k's answer for the query (written by task head k)
    logit: int  # n_letters dims: read by the unembedding
    used: int

    def answer_dim(self, task: int, letter: int) -> int:
        return self.answer + task * self.n_letters + letter


def layout(options: ConstructedOptions) -> Layout:
    K, n = options.n_tasks, len(options.alphabet)
    used = 1 + n + 1 + n + 1 + K + K + K * n + n
    n_heads = max(K, 2)
    head_dim = max(24, n, math.ceil(used / n_heads))
    head_dim += head_dim % 2
    start = 0

    def take(size: int) -> int:
        nonlocal start
        start += size
        return start - size

    return Layout(
        n_tasks=K, n_letters=n, n_heads=n_heads, head_dim=head_dim, d_model=n_heads * head_dim,
        const=take(1), token=take(n), is_sep=take(1), prev2=take(n), prev_sep=take(1), consistent=take(K),
        mix=take(K), answer=take(K * n), logit=take(n), used=used,
    )


@dataclass(frozen=True)
class KnownTruth:
    """What the construction does, in the toolkit's vocabulary (for validating methods against it).

    ``task_heads``: task name -> (layer, head) computing its answer; ``mixing_head``: the head that
    averages consistency into the shares; ``bookkeeping_heads``: the layer-0 previous-token heads;
    ``answer_block``: the block that writes the answers onto the logits (so the logit lens sees them
    from lens layer ``answer_block + 1`` on, the residual after that block); ``mix_layer``: the block
    after which the query's residual is ``base + p`` (task vectors and injections there).
    """

    task_heads: dict[str, tuple[int, int]]
    mixing_head: tuple[int, int]
    bookkeeping_heads: dict[str, tuple[int, int]]
    answer_block: int
    mix_layer: int
    head_logit: float
    wrong_logit: float
    grid: list[float]


def known_truth(options: ConstructedOptions) -> KnownTruth:
    tasks = [f"shift{s}" for s in range(1, options.n_tasks + 1)]
    return KnownTruth(
        task_heads={t: (2, k) for k, t in enumerate(tasks)},
        mixing_head=(1, 0),
        bookkeeping_heads={"previous token is the separator": (0, 0), "token two back": (0, 1)},
        answer_block=2,
        mix_layer=1,
        head_logit=HEAD_LOGIT,
        wrong_logit=WRONG_LOGIT,
        grid=[float(g) for g in options.grid],
    )


# ------------------------------------------------------------------------------------ RoPE


def rope_theta(head_dim: int) -> float:
    """Rotary base making the last pair's frequency 1e-10 (position-free over the context)."""
    return float(1e10 ** (head_dim / (head_dim - 2)))


def _frequencies(head_dim: int) -> np.ndarray:
    base = rope_theta(head_dim)
    return base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)


def offset_query(head_dim: int, offset: int, max_len: int = MAX_POSITIONS) -> tuple[np.ndarray, np.ndarray]:
    """Query and key (per rotary pair, before rotation) of a head attending ``offset`` tokens back.

    Each informative pair contributes ``a cos((Δ - offset) θ_i)`` to the score at distance Δ, which
    peaks at Δ = offset; the amplitudes are scaled so every other distance up to ``max_len`` scores
    at least :data:`ATTENTION_MARGIN` lower.
    """
    theta = _frequencies(head_dim)
    half = head_dim // 2
    use = theta * max_len > 0.05
    use[-1] = False  # the last pair carries content, never position
    delta = np.arange(0, max_len + 1) - offset
    delta = delta[delta != 0]
    margins = (1 - np.cos(np.outer(delta, theta[use]))).sum(1)
    worst = float(margins.min())
    if worst <= 1e-6:
        raise InterpError(f"constructed model: no rotary pair separates offset {offset} (head_dim {head_dim})")
    amplitude = ATTENTION_MARGIN / worst
    q = np.zeros(head_dim)
    k = np.zeros(head_dim)
    for i in np.flatnonzero(use):
        q[i] = amplitude
        k[i], k[i + half] = math.cos(offset * theta[i]), math.sin(offset * theta[i])
    return q, k


# ------------------------------------------------------------------------------------ the weights


def _log_kinks(options: ConstructedOptions) -> tuple[float, np.ndarray, np.ndarray, float]:
    """``f(1)``, kinks ``u_j`` (every node above 0), weights ``d_j`` and gate scale β of

        f(p) = f(1) - Σ_j d_j ReLU(u_j - p),   f(0) = 0,   f(u) = log u + B - A on every node u > 0.

    Left-facing ReLUs vanish above their kink, so at the shares that matter every term is small
    (a right-facing basis would carry the steep first segment, slope ≈ 17 / u_1, into every sum and
    lose ~1e-4 to float32 cancellation)."""
    nodes = np.array(options.nodes)
    values = np.r_[0.0, np.log(nodes[1:]) + WRONG_LOGIT - HEAD_LOGIT]
    slopes = np.diff(values) / np.diff(nodes)  # s_j on [u_j, u_{j+1}]
    weights = np.r_[slopes[:-1] - slopes[1:], slopes[-1]]  # d_j for u_1 .. u_m
    beta = KINK_SHARPNESS / float(np.diff(nodes).min())
    return float(values[-1]), nodes[1:], weights, beta


def build_model(options: ConstructedOptions) -> Any:
    """The hand-set ``LlamaForCausalLM`` (float32) and its character tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from interp.char_tokenizer import build_char_tokenizer

    tokenizer = build_char_tokenizer()
    lay = layout(options)
    K, n, H, hd, d = lay.n_tasks, lay.n_letters, lay.n_heads, lay.head_dim, lay.d_model
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=d, intermediate_size=options.intermediate_size, num_hidden_layers=3,
        num_attention_heads=H, num_key_value_heads=H, head_dim=hd, max_position_embeddings=MAX_POSITIONS,
        rms_norm_eps=1e-6, rope_theta=rope_theta(hd), tie_word_embeddings=False, attention_bias=False,
        mlp_bias=False, hidden_act="silu", pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    letters = [tokenizer.convert_tokens_to_ids(c) for c in options.alphabet]
    sep_id = tokenizer.convert_tokens_to_ids(SEPARATOR)
    newline_id = tokenizer.convert_tokens_to_ids("\n")

    def shift(letter: int, task: int) -> int:  # task k (0-based) is shift k+1
        return (letter + task + 1) % n

    f64 = np.float64
    emb = np.zeros((config.vocab_size, d), f64)
    emb[:, lay.const] = CONST
    for v, tok in enumerate(letters):
        emb[tok, lay.token + v] = 1.0
    emb[sep_id, lay.is_sep] = 1.0

    # RMSNorm as identity: divide by ≈ CONST/√d, multiply back; the constant reads as 1.
    norm = np.full(d, CONST / math.sqrt(d))
    norm[lay.const] = 1.0 / math.sqrt(d)
    sqrt_hd = math.sqrt(hd)
    half = hd // 2

    def attn() -> dict[str, np.ndarray]:
        return {"q": np.zeros((H * hd, d), f64), "k": np.zeros((H * hd, d), f64), "v": np.zeros((H * hd, d), f64),
                "o": np.zeros((d, H * hd), f64)}

    def positional(w: dict[str, np.ndarray], head: int, offset: int) -> None:
        q, k = offset_query(hd, offset)
        w["q"][head * hd:(head + 1) * hd, lay.const] = q * sqrt_hd  # the attention scales scores by 1/√hd
        w["k"][head * hd:(head + 1) * hd, lay.const] = k

    layers = [attn() for _ in range(3)]
    # Layer 0, head 0: previous token -> "is separator" flag.  Head 1: two back -> its letter.
    positional(layers[0], 0, 1)
    layers[0]["v"][0 * hd, lay.is_sep] = 1.0
    layers[0]["o"][lay.prev_sep, 0 * hd] = 1.0
    positional(layers[0], 1, 2)
    for v in range(n):
        layers[0]["v"][1 * hd + v, lay.token + v] = 1.0
        layers[0]["o"][lay.prev2 + v, 1 * hd + v] = 1.0
    # Layer 1, head 0: the mixing head. Content pair (the last, position-free): score = margin · flag.
    content = half - 1
    layers[1]["q"][content, lay.const] = ATTENTION_MARGIN * sqrt_hd
    layers[1]["k"][content, lay.prev_sep] = 1.0
    for k in range(K):
        layers[1]["v"][k, lay.consistent + k] = 1.0
        layers[1]["o"][lay.mix + k, k] = 1.0
    # Layer 2, head k: task head of task k, attends to the previous token (the query's letter).
    for k in range(K):
        positional(layers[2], k, 1)
        for v in range(n):
            layers[2]["v"][k * hd + v, lay.token + v] = 1.0
            layers[2]["o"][lay.answer_dim(k, shift(v, k)), k * hd + v] = 1.0
            layers[2]["o"][lay.logit + shift(v, k), k * hd + v] = HEAD_LOGIT

    inter = options.intermediate_size
    mlps = [{"gate": np.zeros((inter, d), f64), "up": np.zeros((inter, d), f64), "down": np.zeros((d, inter), f64)}
            for _ in range(3)]
    # MLP 0 (bookkeeping): c_k += [two back == v] · [current == shift_k(v)], one neuron per (k, v).
    row = 0
    for k in range(K):
        for v in range(n):
            mlps[0]["gate"][row, lay.prev2 + v] = GATE
            mlps[0]["gate"][row, lay.const] = -GATE / 2
            mlps[0]["up"][row, lay.token + shift(v, k)] = 1.0
            mlps[0]["down"][lay.consistent + k, row] = 2.0 / GATE
            row += 1
    # MLP 2 (output): logit[v] += answer_k[v] · f(p_k), one neuron per (task, letter, kink).
    f_one, kinks, weights, beta = _log_kinks(options)
    row = 0
    for k in range(K):
        for v in range(n):
            # silu(β) = β: the constant term f(1), gated by the answer slot.
            mlps[2]["gate"][row, lay.const] = beta
            mlps[2]["up"][row, lay.answer_dim(k, v)] = 1.0
            mlps[2]["down"][lay.logit + v, row] = f_one / beta
            row += 1
            for u, w in zip(kinks, weights):
                # silu(β(u - p)) / β = ReLU(u - p): exact at the kink itself and farther than 30/β from it.
                mlps[2]["gate"][row, lay.mix + k] = -beta
                mlps[2]["gate"][row, lay.const] = beta * u
                mlps[2]["up"][row, lay.answer_dim(k, v)] = 1.0
                mlps[2]["down"][lay.logit + v, row] = -w / beta
                row += 1

    unembed = np.zeros((config.vocab_size, d), f64)
    unembed[:, lay.const] = -WRONG_LOGIT
    for v, tok in enumerate(letters):
        unembed[tok, lay.logit + v] = 1.0
    # After an answer letter the model ends the line (decoding stops cleanly at the answer's end).
    unembed[newline_id, lay.prev_sep] = 2 * WRONG_LOGIT

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    state = model.state_dict()

    def put(name: str, value: np.ndarray) -> None:
        if state[name].shape != value.shape:
            raise AssertionError(f"{name}: {tuple(state[name].shape)} vs {value.shape}")
        state[name] = torch.tensor(value, dtype=torch.float32)

    put("model.embed_tokens.weight", emb)
    put("model.norm.weight", norm)
    put("lm_head.weight", unembed)
    for i in range(3):
        prefix = f"model.layers.{i}"
        put(f"{prefix}.input_layernorm.weight", norm)
        put(f"{prefix}.post_attention_layernorm.weight", norm)
        for proj in ("q", "k", "v", "o"):
            put(f"{prefix}.self_attn.{proj}_proj.weight", layers[i][proj])
        for proj in ("gate", "up", "down"):
            put(f"{prefix}.mlp.{proj}_proj.weight", mlps[i][proj])
    model.load_state_dict(state)
    return model.eval(), tokenizer


def model_dir(options: ConstructedOptions) -> Path:
    return interp_home() / "models" / f"constructed-superposition-k{options.n_tasks}-{options.alphabet}-" \
                                      f"n{options.n_examples}-v{FORMAT_VERSION}"


def prepare(options: ConstructedOptions) -> Path:
    """Write (once) and return the HF directory of the constructed model with ``options``."""
    constructed_task_set(options)

    def build(out: Path) -> None:
        model, tokenizer = build_model(options)
        model.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
        info = {"options": asdict(options), "task_set": options.task_set_name, "format": FORMAT_VERSION,
                "known_truth": asdict(known_truth(options)), "layout": asdict(layout(options))}
        (out / INFO_FILE).write_text(json.dumps(info, indent=1))

    return publish_directory(model_dir(options), build)


def prepare_spec(spec: str) -> Path:
    options = parse_constructed_spec(spec)
    if options is None:
        raise InterpError(f"{spec!r} is not a constructed-model spec: write {SPEC}[:k=3,alphabet=abcdefgh,examples=12]")
    return prepare(options)


def options_of(model: Any) -> ConstructedOptions:
    """The options of a loaded constructed model (InterpError for any other model)."""
    info = Path(model.path) / INFO_FILE
    if not info.is_file():
        raise InterpError(f"model {model.name!r} is not the constructed superposition model: use --model {SPEC}")
    return ConstructedOptions(**json.loads(info.read_text())["options"])


def construction_diagram(options: ConstructedOptions) -> str:
    """Plain-text diagram of which head and MLP does what, with this model's head names and dimensions."""
    lay = layout(options)
    truth = known_truth(options)

    def span(start: int, size: int) -> str:
        return f"{start}" if size == 1 else f"{start}-{start + size - 1}"

    head = "L{}H{}".format
    tasks = "\n".join(f"         {head(*h)}  task head {t}: attends to the query letter x, writes {t}(x) into "
                      f"answer slot {k + 1} (+{HEAD_LOGIT:g} on its logit)" for k, (t, h) in enumerate(truth.task_heads.items()))
    return (
        f"d_model {lay.d_model} ({lay.used} used), {lay.n_heads} heads x {lay.head_dim}, alphabet "
        f"{options.alphabet!r}, K={options.n_tasks}, exact for prompts of <= {options.n_examples} examples\n"
        f"residual slots: const {span(lay.const, 1)} | letter {span(lay.token, lay.n_letters)} | is-sep "
        f"{span(lay.is_sep, 1)} | letter two back {span(lay.prev2, lay.n_letters)} | prev-is-sep "
        f"{span(lay.prev_sep, 1)} | consistent c_k {span(lay.consistent, lay.n_tasks)} | share p_k "
        f"{span(lay.mix, lay.n_tasks)} | answers {span(lay.answer, lay.n_tasks * lay.n_letters)} | logits "
        f"{span(lay.logit, lay.n_letters)}\n"
        f"layer 0  {head(0, 0)}  previous token is the separator -> flag at every answer position\n"
        f"         {head(0, 1)}  token two back -> the example's input letter at its answer position\n"
        "         MLP   bookkeeping: c_k = [answer == shift_k(input)] (one neuron per task x letter)\n"
        f"layer 1  {head(*truth.mixing_head)}  mixing head: at the query, uniform attention over answer positions, "
        "reads c -> p_k = share of task k\n"
        "         MLP   zero\n"
        f"layer 2\n{tasks}\n"
        f"         MLP   output: logit(answer_k) += f(p_k) = log p_k + {WRONG_LOGIT:g} - {HEAD_LOGIT:g} "
        "(piecewise linear, exact on fractions a/b, b <= examples)\n"
        f"unembed  every token at -{WRONG_LOGIT:g}; letter v reads logit[v]  =>  P(answer_k) = p_k"
    )
