"""Every analysis, correct on twelve architecture families (tiny random-weight models).

For each family (see ``tests/archs.py``) the invariants that make the numbers trustworthy:
KV-reuse scoring equals naive scoring (on prompts longer than the attention window where the
family has one); the logit lens at the last layer is the model's output; the direct logit
attributions sum to the logit and the heads rebuild each attention output; ablating no head
changes nothing and ablating heads changes the scores; patching a layer with its own clean
activation reproduces the clean output; task vectors and their interpolation run; the cache
returns what was computed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from archs import ARCHITECTURES, SLIDING, build_tiny

from interp.activations import collect_activations, get_activations
from interp.models import LoadedModel, load_model
from interp.patching import Patch, patched_logprobs, patched_logprobs_full
from interp.prompts import Prompt, build_prompts
from interp.scoring import score_prompts, score_prompts_naive
from interp.tasks import get_task_set

pytestmark = pytest.mark.unit

_LOADED: dict[str, LoadedModel] = {}


@pytest.fixture(scope="module", params=ARCHITECTURES)
def arch_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    arch = request.param
    if arch not in _LOADED:
        path = build_tiny(arch, tmp_path_factory.mktemp(f"tiny-{arch}"))
        _LOADED[arch] = load_model(str(path))
    return _LOADED[arch]


def _prompts(n: int = 2, per_task: int = 4) -> list[Prompt]:
    return build_prompts(get_task_set("country"), n_prompts=n, examples_per_task=per_task, seed=1)


def _arch(model: LoadedModel) -> str:
    return next(a for a, m in _LOADED.items() if m is model)


def test_loads_with_a_supported_attention(arch_model: LoadedModel) -> None:
    expected = "eager" if _arch(arch_model) == "gemma2" else "sdpa"
    assert arch_model.adapter.attn_implementation == expected
    assert arch_model.describe()["final_norm"].startswith(("rmsnorm", "layernorm"))


def test_kv_reuse_scoring_equals_naive(arch_model: LoadedModel) -> None:
    prompts = _prompts()
    window = SLIDING.get(_arch(arch_model))
    if window is not None:  # the prompts must reach past the window for this test to mean anything
        assert min(len(arch_model.encode_prompt(p.text)) for p in prompts) > 4 * window
    fast = score_prompts(arch_model, prompts, batch_size=2, show_progress=False)
    naive = score_prompts_naive(arch_model, prompts)
    assert (fast["logprob"] - naive["logprob"]).abs().max() < 1e-4


def test_logit_lens_last_layer_is_the_output(arch_model: LoadedModel) -> None:
    from analyses.logit_lens import logit_lens_rows

    prompts = _prompts(n=1)
    rows = logit_lens_rows(arch_model, prompts, show_progress=False, use_cache=False)
    ids = arch_model.encode_prompt(prompts[0].text)
    with torch.no_grad():
        out = torch.log_softmax(arch_model.hf_model(torch.tensor([ids])).logits[0, -1].float(), -1)
    final = rows[rows["site"] == "final"]
    assert len(final) == len(prompts[0].answers)
    for r in final.itertuples():
        assert abs(r.logprob - float(out[r.token])) < 1e-4


def test_dla_closes_and_ablation_acts(arch_model: LoadedModel) -> None:
    from analyses.head_attribution import ablate_heads, head_attribution, top_heads

    prompts = _prompts()
    result = head_attribution(arch_model, prompts, show_progress=False, use_cache=False)
    assert result.closure["error"].max() <= 1e-4 * max(1.0, result.closure["logit"].abs().max())
    assert result.closure["attn_rebuild_error"].max() < 1e-4
    heads = result.heads
    assert (heads["logit_attr"].abs() > 1e-6).mean() > 0.5  # attributions are not degenerate zeros
    base = score_prompts(arch_model, prompts, show_progress=False)
    none = ablate_heads(arch_model, prompts, [], mode="zero", show_progress=False)
    assert (none["logprob"] - base["logprob"]).abs().max() < 1e-6
    task = result.tasks[0]
    ablated = ablate_heads(arch_model, prompts, top_heads(result, task, n=3), mode="mean", show_progress=False)
    assert (ablated["logprob"] - base["logprob"]).abs().max() > 1e-3


def test_patching_with_own_activation_is_identity(arch_model: LoadedModel) -> None:
    prompt = _prompts(n=1)[0]
    ids = arch_model.encode_prompt(prompt.text)
    conts = [arch_model.encode_continuation(a) for a in prompt.answers.values()]
    acts = collect_activations(arch_model, [prompt], ["resid_post"], positions="last", show_progress=False)
    clean = patched_logprobs_full(arch_model, ids, conts, [None] * len(conts))
    for layer in range(arch_model.n_layers):
        own = Patch(layer, acts[f"blocks.{layer}.hook_resid_post"][0, 0])
        patched = patched_logprobs(arch_model, ids, conts, [own] * len(conts))
        assert max(abs(a - b) for x, y in zip(patched, clean) for a, b in zip(x, y)) < 1e-4
    # ...and a different vector does change the output (the hook really acts).
    other = Patch(0, torch.randn(arch_model.d_model) * 10)
    moved = patched_logprobs(arch_model, ids, conts, [other] * len(conts))
    assert max(abs(a - b) for x, y in zip(moved, clean) for a, b in zip(x, y)) > 1e-3


def test_task_vectors_and_interpolation_run(arch_model: LoadedModel) -> None:
    from analyses.task_vectors import extract_task_vectors, interpolate_vectors, layer_sweep, zero_shot_queries

    ts = get_task_set("country")
    tasks = ["capital", "upper"]
    vectors = extract_task_vectors(arch_model, ts, tasks, n_prompts=2, n_examples=4, seed=0, show_progress=False)
    queries = zero_shot_queries(ts, tasks, 2, seed=3)
    sweep = layer_sweep(arch_model, vectors, queries, show_progress=False)
    assert set(sweep["layer"]) >= set(range(arch_model.n_layers))
    assert sweep["prob"].between(0, 1).all()
    curve = interpolate_vectors(arch_model, vectors, queries, "capital", "upper", layer=0, lambdas=[0.0, 1.0],
                                show_progress=False)
    assert curve["prob"].between(0, 1).all() and len(curve) > 0


def test_cache_build_and_reuse(arch_model: LoadedModel, tmp_path: Path) -> None:
    prompts = _prompts()
    first = get_activations(arch_model, prompts, ["resid_post", "attn.hook_z"], cache_dir=tmp_path,
                            show_progress=False, log=False)
    again = get_activations(arch_model, prompts, ["resid_post", "attn.hook_z"], cache_dir=tmp_path,
                            show_progress=False, log=False)
    assert first.status == "computed" and again.status == "reused"
    for name in first.keys():
        assert torch.equal(first[name], again[name])


class _UnknownNorm(torch.nn.Module):
    """A final norm of no known form (max-abs scaling)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(d))
        self.eps = 1e-5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * x / (x.abs().amax(-1, keepdim=True) + self.eps)


def test_unknown_norm_refuses_before_computing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import analyses.head_attribution as ha
    from interp.errors import InterpError

    model = load_model(str(build_tiny("llama", tmp_path / "llama")))
    model.hf_model.model.norm = _UnknownNorm(model.d_model)

    def no_forward(*args: object, **kwargs: object) -> None:
        raise AssertionError("computed before refusing")

    monkeypatch.setattr(ha, "get_activations", no_forward)
    with pytest.raises(InterpError, match="refused: .*matches no known RMSNorm/LayerNorm form"):
        ha.head_attribution(model, _prompts(n=1), show_progress=False, use_cache=False)


def test_closure_beyond_tolerance_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from analyses.head_attribution import head_attribution
    from interp.errors import InterpError

    model = load_model(str(build_tiny("gpt2", tmp_path / "gpt2")))
    W_O, b_O = model.adapter.output_weights()
    monkeypatch.setattr(model.adapter, "output_weights", lambda: (W_O * 1.01, b_O))  # a 1 % misdescription
    with pytest.raises(InterpError, match="does not close"):
        head_attribution(model, _prompts(n=1), show_progress=False, use_cache=False)


@pytest.mark.parametrize("arch", ["gemma2", "gpt_neox", "olmo2"])
def test_commands_run_on_other_families(arch: str, tmp_path: Path) -> None:
    # The commands a user types, on a local directory of each family: heads (DLA + ablation +
    # attention view), logit lens and cache build all exit 0 and write their tables.
    import pandas as pd

    from interp_app.cli import main

    model_dir = str(build_tiny(arch, tmp_path / arch))
    common = ["--model", model_dir, "--task-set", "country", "--n-prompts", "2", "--examples-per-task", "3"]
    cache = ["--cache-dir", str(tmp_path / "cache")]
    assert main(["run", "heads", *common, *cache, "--top-n", "2", "--ablation", "mean",
                 "--out", str(tmp_path / "heads")]) == 0
    closure = pd.read_csv(tmp_path / "heads" / "closure.csv")
    assert closure["error"].max() < 1e-4 and len(closure) == 2 * 3
    assert main(["run", "logit-lens", *common, *cache, "--out", str(tmp_path / "lens")]) == 0
    assert (tmp_path / "lens" / "logit_lens.parquet").exists()
    assert main(["cache", "build", *common, *cache, "--hooks", "resid_post,attn.hook_z"]) == 0
