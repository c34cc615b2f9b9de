"""The model adapter: the one place that knows an architecture.

Everything the toolkit reads from or writes into a model goes through :class:`ModelAdapter`:
the decoder-layer list, each layer's attention output projection (whose input is every head's
``z``, head-major), the final norm *as the model applies it*, sub-layer post-norms, the
unembedding and its bias, final-logit soft-capping, the attention window and which attention
implementation the model accepts.

Module paths are not a hand table: they come from TransformerLens 4.x's own architecture
adapter for the model (``bridge.adapter.component_mapping``: ``blocks`` → ``model.layers``,
``blocks.attn.o`` → ``self_attn.o_proj``, ``ln_final`` → ``model.norm``, ``unembed`` →
``lm_head``, ``ln1_post`` → ``post_attention_layernorm``, ...), which covers ~50 families.
What TransformerLens leaves implicit is *derived from the modules and checked numerically*:

* a norm's form (RMSNorm with ``w`` or Gemma's ``1 + w``, LayerNorm with centring, with or
  without weight and bias) is found by evaluating the module on random inputs against each
  known form; a norm of no known form makes direct logit attribution refuse;
* ``W_O`` and ``b_O`` are read by applying the output projection to the identity (so a
  ``Linear``, GPT-2's ``Conv1D`` or any other affine map gives the same per-head weights).

Adding a model family is one entry in TransformerLens (or here, :data:`FAMILY_NOTES`, when a
family needs something TransformerLens does not say).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InterpError

# How closely a derived norm form must reproduce the module (relative, fp32).
NORM_MATCH_TOL = 1e-4


@dataclass(frozen=True)
class Norm:
    """A normalisation as the model applies it: ``gain * (x - c·mean(x)) / sqrt(var_c(x) + eps) + bias``.

    ``centre`` is True for LayerNorm (mean subtracted, variance about the mean), False for
    RMSNorm (``var_c`` is the mean square). ``gain`` is the *effective* per-channel scale
    (``w``, Gemma's ``1 + w``, or None for none) and ``bias`` the additive term.
    With the scale frozen, the norm is linear in ``x``: :meth:`linear` is that linear part,
    which is what direct logit attribution distributes over the residual's components.
    """

    form: str
    centre: bool
    gain: Tensor | None
    bias: Tensor | None
    eps: float

    def scale(self, x: Float[Tensor, "... d"]) -> Float[Tensor, "... 1"]:
        x = x - x.mean(-1, keepdim=True) if self.centre else x
        return (x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt()

    def linear(self, x: Float[Tensor, "... d"], scale: Float[Tensor, "... 1"]) -> Float[Tensor, "... d"]:
        """The norm's action on ``x`` with the scale frozen at ``scale`` (no bias)."""
        x = x - x.mean(-1, keepdim=True) if self.centre else x
        x = x / scale
        return x * self.gain.to(x) if self.gain is not None else x

    def __call__(self, x: Float[Tensor, "... d"]) -> Float[Tensor, "... d"]:
        out = self.linear(x, self.scale(x))
        return out + self.bias.to(out) if self.bias is not None else out


def _declared_eps(module: torch.nn.Module, config: Any) -> list[float]:
    """Epsilons the module or its config declare, most specific first."""
    found = []
    for attr in ("variance_epsilon", "eps", "epsilon"):
        value = getattr(module, attr, None)
        if isinstance(value, (int, float)):
            found.append(float(value))
    for attr in ("rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon", "norm_eps"):
        value = getattr(config, attr, None)
        if isinstance(value, (int, float)):
            found.append(float(value))
    return found


# Tried when neither the module nor its config names an epsilon (OLMo's LayerNorm hard-codes 1e-5).
_COMMON_EPS = (1e-5, 1e-6, 1e-8, 1e-12)


def derive_norm(module: torch.nn.Module, config: Any) -> Norm | str:
    """The :class:`Norm` that reproduces ``module``, or a one-line reason why none does.

    Each candidate form is evaluated on random inputs at two scales — one large, one so small
    that epsilon dominates — so both the form and its epsilon are pinned down.
    """
    weight = getattr(module, "weight", None)
    bias = getattr(module, "bias", None)
    weight = weight.detach().double().cpu() if isinstance(weight, Tensor) else None
    bias = bias.detach().double().cpu() if isinstance(bias, Tensor) else None
    d = weight.shape[-1] if weight is not None else (getattr(config, "hidden_size", None) or getattr(config, "n_embd", None))
    if d is None:
        return f"cannot tell the width of {type(module).__name__}"
    param = next(module.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(4, int(d), generator=gen, dtype=torch.float64) + 0.2
    probes = [base * 3, base * 1e-3]
    with torch.no_grad():
        expected = [module(x.to(device, dtype)).double().cpu() for x in probes]
    tol = NORM_MATCH_TOL if dtype == torch.float32 else 2e-2
    for eps in dict.fromkeys([*_declared_eps(module, config), *_COMMON_EPS]):
        for centre in (False, True):
            kind = "layernorm" if centre else "rmsnorm"
            gains = [(f"{kind}(w)", weight), (f"{kind}(1+w)", 1.0 + weight)] if weight is not None else [(kind, None)]
            for form, gain in gains:
                norm = Norm(form + ("+b" if bias is not None else ""), centre, gain, bias, eps)
                if all(float((norm(x) - e).abs().max()) <= tol * max(1.0, float(e.abs().max()))
                       for x, e in zip(probes, expected)):
                    return norm
    return f"{type(module).__name__} matches no known RMSNorm/LayerNorm form"


def _module(root: torch.nn.Module, path: str) -> torch.nn.Module:
    try:
        return root.get_submodule(path)
    except AttributeError:
        raise InterpError(f"{type(root).__name__} has no module {path!r}: this architecture's layout is not "
                          "the one TransformerLens describes; load a supported family") from None


class ModelAdapter:
    """Architecture knowledge for one loaded model (``hf_model``; ``bridge`` supplies the layout).

    All module accessors return modules of ``hf_model`` (the plain model used for scoring,
    patching and ablation); the bridge's own module tree shares the same parameters.
    """

    def __init__(self, hf_model: torch.nn.Module, bridge: Any, attn_implementation: str) -> None:
        self.hf_model = hf_model
        self.config = hf_model.config
        self.attn_implementation = attn_implementation
        mapping = bridge.adapter.component_mapping
        blocks = mapping["blocks"]
        subs = blocks.submodules
        self.architecture = type(hf_model).__name__
        self.layers_path: str = blocks.name
        self.attn_name: str = subs["attn"].name
        self.o_name: str = subs["attn"].submodules["o"].name
        self.mlp_name: str = subs["mlp"].name
        self.post_attn_norm_name: str | None = subs["ln1_post"].name if "ln1_post" in subs else None
        self.post_mlp_norm_name: str | None = subs["ln2_post"].name if "ln2_post" in subs else None
        self.final_norm_path: str | None = mapping["ln_final"].name if "ln_final" in mapping else None
        self.unembed_path: str = mapping["unembed"].name
        self.parallel_residual = bool(getattr(bridge.cfg, "parallel_attn_mlp", False))
        cap = getattr(self.config, "final_logit_softcapping", None)
        self.final_logit_softcap: float | None = float(cap) if cap else None
        self.n_heads = int(bridge.cfg.n_heads)
        self.d_head = int(bridge.cfg.d_head)

    # ------------------------------------------------------------------ modules

    def layers(self) -> list[torch.nn.Module]:
        return list(_module(self.hf_model, self.layers_path))

    def layer(self, index: int) -> torch.nn.Module:
        """Decoder block ``index``; its output is ``blocks.{index}.hook_resid_post``."""
        return self.layers()[index]

    def o_proj(self, layer: int) -> torch.nn.Module:
        """The attention output projection of ``layer``; its input is every head's ``z``, head-major."""
        return _module(self.layer(layer), f"{self.attn_name}.{self.o_name}")

    def post_attn_norm(self, layer: int) -> Norm | None:
        """The norm applied to the attention output before the residual add (OLMo 2, Gemma 2/3)."""
        if self.post_attn_norm_name is None:
            return None
        return self._norm_or_raise(_module(self.layer(layer), self.post_attn_norm_name), "post-attention norm")

    def unembed_module(self) -> torch.nn.Module:
        return _module(self.hf_model, self.unembed_path)

    # ------------------------------------------------------------------ derived weights

    @cached_property
    def final_norm(self) -> Norm | str:
        """The final norm as the model applies it, or the reason it cannot be expressed."""
        if self.final_norm_path is None:
            return "the model has no final norm in its TransformerLens layout"
        return derive_norm(_module(self.hf_model, self.final_norm_path), self.config)

    def _norm_or_raise(self, module: torch.nn.Module, what: str) -> Norm:
        norm = derive_norm(module, self.config)
        if isinstance(norm, str):
            raise InterpError(f"{self.architecture}: {what}: {norm}; direct logit attribution needs a known norm")
        return norm

    def unembed(self) -> tuple[Float[Tensor, "d_model d_vocab"], Float[Tensor, " d_vocab"] | None]:
        """``W_U`` and the output bias ``b_U`` (None when the head has no bias), float64 on CPU."""
        head = self.unembed_module()
        weight = head.weight.detach().double().cpu()
        # nn.Linear stores [vocab, d_model]; a Conv1D-style head stores [d_model, vocab].
        W_U = weight.T if isinstance(head, torch.nn.Linear) else weight
        bias = getattr(head, "bias", None)
        return W_U.contiguous(), (bias.detach().double().cpu() if isinstance(bias, Tensor) else None)

    def unembed_columns(self, tokens: Tensor) -> tuple[Float[Tensor, "d_model ..."], Float[Tensor, " d_model"],
                                                       Float[Tensor, " d_vocab"] | None]:
        """``W_U[:, tokens]``, the mean column of ``W_U`` over the vocabulary and ``b_U`` (None when the head
        has no bias), float64 on CPU — what a centred logit needs, without a float64 copy of all of ``W_U``."""
        head = self.unembed_module()
        weight = head.weight.detach()
        rows = weight if isinstance(head, torch.nn.Linear) else weight.T  # [vocab, d_model], a view
        # Summed in chunks: sum(dtype=float64) would first make a float64 copy of all of W_U.
        total = torch.zeros(rows.shape[1], dtype=torch.float64, device=rows.device)
        for start in range(0, rows.shape[0], 4096):
            total += rows[start: start + 4096].double().sum(0)
        mean = (total / rows.shape[0]).cpu()
        flat = tokens.reshape(-1).to(rows.device)
        columns = rows.index_select(0, flat).double().cpu().T.reshape(rows.shape[1], *tokens.shape)
        bias = getattr(head, "bias", None)
        return columns.contiguous(), mean, (bias.detach().double().cpu() if isinstance(bias, Tensor) else None)

    def output_weights(self) -> tuple[Float[Tensor, "layer head d_head d_model"], Float[Tensor, "layer d_model"]]:
        """Per-head ``W_O`` and the output bias ``b_O`` of every layer (zeros when none), float64.

        Read by applying each layer's output projection to the identity, so any affine module
        (``Linear``, ``Conv1D``) gives ``o(z) = Σ_h z_h @ W_O[h] + b_O`` exactly.
        """
        H, dh = self.n_heads, self.d_head
        W_O, b_O = [], []
        for layer in range(len(self.layers())):
            o = self.o_proj(layer)
            param = next(o.parameters())
            with torch.no_grad():
                eye = torch.eye(H * dh, device=param.device, dtype=param.dtype)
                zero = torch.zeros(1, H * dh, device=param.device, dtype=param.dtype)
                bias = o(zero).double().cpu()[0]
                full = o(eye).double().cpu() - bias  # [H*dh, d_model]
            W_O.append(full.view(H, dh, -1))
            b_O.append(bias)
        return torch.stack(W_O), torch.stack(b_O)

    # ------------------------------------------------------------------ what the model does at its output

    def softcap(self, logits: Tensor) -> Tensor:
        cap = self.final_logit_softcap
        return logits if cap is None else cap * torch.tanh(logits / cap)

    @torch.no_grad()
    def resid_to_logits(self, resid: Float[Tensor, "... d_model"], softcap: bool = True) -> Float[Tensor, "... d_vocab"]:
        """Logits the model outputs for a final residual ``resid``: its own final norm, unembedding
        and (when ``softcap``) final-logit soft-capping — the logit lens and DLA's reference."""
        param = next(self.hf_model.parameters())
        x = resid.to(param.device, param.dtype)
        if self.final_norm_path is not None:
            x = _module(self.hf_model, self.final_norm_path)(x)
        logits = self.unembed_module()(x).float()
        return self.softcap(logits) if softcap else logits

    # ------------------------------------------------------------------ attention masks

    def sliding_windows(self) -> list[int | None]:
        """Per layer, the attention window in tokens (None: full causal attention)."""
        n = len(self.layers())
        window = getattr(self.config, "sliding_window", None)
        if not window or getattr(self.config, "use_sliding_window", True) is False:
            return [None] * n
        types = getattr(self.config, "layer_types", None)
        if types:
            return [int(window) if t == "sliding_attention" else None for t in types]
        return [int(window)] * n

    def attention_mask(self, allowed: Tensor, query_pos: Tensor, key_pos: Tensor, dtype: torch.dtype) -> Any:
        """An additive 4-D mask from ``allowed`` [batch, query, key], windowed per layer type.

        ``query_pos`` [batch, query] and ``key_pos`` [batch, key] are absolute positions. Models
        with sliding-window layers get a mapping ``{"full_attention": m, "sliding_attention": m'}``
        (the form transformers' masking accepts), where ``m'`` also hides keys farther back than
        the window, exactly as the model's own masks do.
        """
        def additive(mask: Tensor) -> Tensor:
            return torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, torch.finfo(dtype).min)[:, None]

        windows = self.sliding_windows()
        if all(w is None for w in windows):
            return additive(allowed)
        (window,) = {w for w in windows if w is not None}
        # transformers' sliding_window_overlay: key kv is visible to query q when kv > q - window.
        sliding = additive(allowed & (key_pos[:, None, :] > query_pos[:, :, None] - window))
        if all(w is not None for w in windows):
            return sliding  # every layer windowed (Mistral): one mask, the form every model accepts
        return {"full_attention": additive(allowed), "sliding_attention": sliding}

    # ------------------------------------------------------------------ support

    def dla_unsupported(self) -> str | None:
        """Why direct logit attribution cannot be exact on this model, or None when it can."""
        norm = self.final_norm
        if isinstance(norm, str):
            return f"{self.architecture}: final norm: {norm}"
        for name in (self.post_attn_norm_name,):
            if name is not None:
                reason = derive_norm(_module(self.layer(0), name), self.config)
                if isinstance(reason, str):
                    return f"{self.architecture}: post-attention norm: {reason}"
        return None

    def describe(self) -> dict[str, Any]:
        norm = self.final_norm
        return {
            "attn_implementation": self.attn_implementation,
            "final_norm": norm.form if isinstance(norm, Norm) else f"unsupported ({norm})",
            "post_norms": self.post_attn_norm_name is not None,
            "parallel_residual": self.parallel_residual,
            "final_logit_softcap": self.final_logit_softcap,
            "sliding_window": next((w for w in self.sliding_windows() if w), None),
        }
