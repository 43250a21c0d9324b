"""Training the router's model from the hotline's own history: ``hotline router train``.

The history is a CSV file with (at least) the columns ``text``, ``unit`` and ``type``. Rows that
cannot be used (a missing value, empty text, an unknown unit or type) are reported by their line
number, skipped and counted; training fails when too few rows remain. Accuracy is measured by
stratified k-fold cross-validation (k from the size of the smallest class, at most
:attr:`TrainSettings.max_folds`) and printed per class, then the model is fitted on every row and
saved with joblib next to a JSON manifest (classes, scikit-learn version, SHA-256 of the model
file). :func:`load_model` refuses a model whose manifest does not match.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import json
import os
import sys
import unicodedata
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import joblib  # type: ignore[import-untyped]
import numpy as np
import sklearn  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field
from sklearn.feature_extraction.text import TfidfVectorizer  # type: ignore[import-untyped]
from sklearn.model_selection import StratifiedKFold, cross_val_predict  # type: ignore[import-untyped]
from sklearn.pipeline import Pipeline  # type: ignore[import-untyped]
from sklearn.svm import LinearSVC  # type: ignore[import-untyped]

from config.kinds import DemandType
from router.classify import LinearHead, TextModel
from router.text import char_ngrams, has_content, model_text

REQUIRED_COLUMNS = ("text", "unit", "type")
MANIFEST_FORMAT = 1
DEFAULT_OUT = Path("var/router-model.joblib")


class TrainError(Exception):
    """The history cannot be used to train a model (the message says why, in Chinese first)."""


class ModelError(Exception):
    """A saved model cannot be used: missing, altered, or from another scikit-learn version."""


class TrainSettings(BaseModel):
    """Limits of a training run (``router.train`` in ``routing.yaml``; CLI options override)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Training fails when fewer usable rows remain.
    min_rows: Annotated[int, Field(ge=10, le=10_000_000)] = 50
    #: At most this many cross-validation folds (fewer when the smallest class is small).
    max_folds: Annotated[int, Field(ge=2, le=20)] = 5
    #: Inverse regularisation strength of the linear SVM.
    regularisation_c: Annotated[float, Field(gt=0, le=1000)] = 1.0
    #: Longest character n-gram. On the team's sample (25 messages a unit) 1–2-grams beat 1–3
    #: (unit accuracy 0.65 vs 0.62): trigrams are mostly seen once and only add noise there;
    #: a large history may prefer 3.
    ngram_max: Annotated[int, Field(ge=1, le=4)] = 2
    #: Texts longer than this are cut (as the classifier does).
    max_text_chars: Annotated[int, Field(ge=50, le=100_000)] = 3000


@dataclass(frozen=True, slots=True)
class BadRow:
    """A history row that was skipped: its line number in the file and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"第{self.line}行：{self.reason}"


@dataclass(frozen=True, slots=True)
class ClassScore:
    """Cross-validated result for one class: how many rows, how many predicted right."""

    label: str
    support: int
    correct: int

    @property
    def accuracy(self) -> float:
        """Share of this class's rows predicted right (its recall)."""
        return self.correct / self.support if self.support else 0.0


@dataclass(frozen=True, slots=True)
class HeadScore:
    """Cross-validated accuracy of one output (unit or type), overall and per class."""

    head: str
    accuracy: float
    classes: tuple[ClassScore, ...]

    def table(self) -> str:
        """A plain-text table, one class per line (columns aligned for CJK terminals)."""
        title = {"unit": "承办单位 (unit)", "type": "诉求类型 (type)"}.get(self.head, self.head)
        total = sum(c.support for c in self.classes)
        correct = sum(c.correct for c in self.classes)
        rows = [(title, "样本", "正确", "准确率")]
        rows.extend(
            (c.label, str(c.support), str(c.correct), f"{c.accuracy:.1%}") for c in self.classes
        )
        rows.append(("总体 overall", str(total), str(correct), f"{self.accuracy:.1%}"))
        width = max(_width(row[0]) for row in rows) + 2
        return "\n".join(
            _pad(name, width) + "".join(_pad(cell, 8, right=True) for cell in cells)
            for name, *cells in rows
        )


def _width(text: str) -> int:
    """Display width: CJK characters take two columns in a terminal."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int, *, right: bool = False) -> str:
    space = " " * max(0, width - _width(text))
    return space + text if right else text + space


@dataclass(frozen=True, slots=True)
class TrainReport:
    """What :func:`train` did: rows used and skipped, cross-validated accuracy, where the model is."""

    rows_used: int
    bad_rows: tuple[BadRow, ...]
    folds: int
    scores: dict[str, HeadScore]
    model_path: Path | None = None
    manifest: dict[str, Any] = field(default_factory=dict)

    def format(self) -> str:
        """The report as the CLI prints it (Chinese first)."""
        lines = [
            f"使用 {self.rows_used} 行，跳过 {len(self.bad_rows)} 行；{self.folds} 折分层交叉验证"
        ]
        lines.extend(f"  跳过 {bad}" for bad in self.bad_rows[:50])
        if len(self.bad_rows) > 50:
            lines.append(f"  …… 另有 {len(self.bad_rows) - 50} 行被跳过")
        for score in self.scores.values():
            lines.extend(["", score.table()])
        if self.model_path is not None:
            lines.extend(
                [
                    "",
                    f"模型已保存：{self.model_path}（sha256 {self.manifest.get('sha256', '')[:12]}…）",
                ]
            )
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class History:
    """The usable rows of a history file, and the skipped ones."""

    texts: list[str]
    units: list[str]
    types: list[str]
    bad_rows: tuple[BadRow, ...]


def read_history(
    path: Path, known_units: Collection[str] | None = None, settings: TrainSettings | None = None
) -> History:
    """Read a history CSV (UTF-8, optionally with a BOM). Raises :class:`TrainError` when the
    file cannot be read or lacks a required column; bad rows are returned, not raised."""
    settings = settings or TrainSettings()
    texts: list[str] = []
    units: list[str] = []
    types: list[str] = []
    bad: list[BadRow] = []
    known_types = {t.value for t in DemandType}
    try:
        with path.open(encoding="utf-8-sig", newline="") as file:
            reader = csv.DictReader(file)
            header = reader.fieldnames or []
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise TrainError(
                    f"{path}: 缺少列 {', '.join(missing)}（需要 text, unit, type；表头为 {header}）"
                )
            for row in reader:
                line = reader.line_num
                values = {c: row.get(c) for c in REQUIRED_COLUMNS}
                absent = [c for c, v in values.items() if v is None]
                if absent:
                    bad.append(BadRow(line, f"缺少列 {', '.join(absent)}"))
                    continue
                text = (values["text"] or "").strip()
                unit = (values["unit"] or "").strip()
                kind = (values["type"] or "").strip()
                if not has_content(text):
                    bad.append(BadRow(line, "text 为空"))
                elif not unit:
                    bad.append(BadRow(line, "unit 为空"))
                elif known_units is not None and unit not in known_units:
                    bad.append(BadRow(line, f"未知单位 {unit!r}"))
                elif kind not in known_types:
                    bad.append(
                        BadRow(line, f"未知类型 {kind!r}（应为 {', '.join(sorted(known_types))}）")
                    )
                else:
                    texts.append(text[: settings.max_text_chars])
                    units.append(unit)
                    types.append(kind)
    except FileNotFoundError:
        raise TrainError(f"{path}: 文件不存在") from None
    except UnicodeDecodeError as exc:
        raise TrainError(f"{path}: 不是 UTF-8 编码（{exc.reason}，字节位置 {exc.start}）") from None
    except csv.Error as exc:
        raise TrainError(f"{path}: CSV 格式错误：{exc}") from None
    return History(texts, units, types, tuple(bad))


def _analyzer(settings: TrainSettings) -> functools.partial[list[str]]:
    return functools.partial(_ngrams, n_max=settings.ngram_max)


def _ngrams(text: str, n_max: int) -> list[str]:
    return char_ngrams(model_text(text), 1, n_max)


def _vectorizer(settings: TrainSettings) -> TfidfVectorizer:
    return TfidfVectorizer(analyzer=_analyzer(settings), sublinear_tf=True, dtype=np.float64)


def _pipeline(settings: TrainSettings) -> Pipeline:
    return Pipeline(
        [
            ("tfidf", _vectorizer(settings)),
            ("svm", LinearSVC(C=settings.regularisation_c, random_state=0)),
        ]
    )


def _folds(labels: Sequence[str], name: str, settings: TrainSettings) -> int:
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    smallest = min(counts, key=lambda k: counts[k])
    if len(counts) < 2:
        raise TrainError(f"{name} 只有一个类别 {smallest!r}，无法训练")
    if counts[smallest] < 2:
        raise TrainError(f"{name} {smallest!r} 只有 {counts[smallest]} 条样本，至少需要 2 条")
    return min(settings.max_folds, counts[smallest])


def _score(head: str, labels: list[str], predicted: Sequence[str]) -> HeadScore:
    classes = []
    for label in sorted(set(labels)):
        rows = [i for i, value in enumerate(labels) if value == label]
        classes.append(ClassScore(label, len(rows), sum(1 for i in rows if predicted[i] == label)))
    correct = sum(1 for truth, guess in zip(labels, predicted, strict=True) if truth == guess)
    return HeadScore(head, correct / len(labels), tuple(classes))


def _two_columns(scores: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    # A binary linear model keeps one row w (positive score → the second class); the rows
    # (0, w) under a softmax give the same decision, so one code path serves both cases.
    return np.column_stack([np.zeros_like(scores), scores]) if scores.ndim == 1 else scores


def _calibrate(scores: np.ndarray[Any, Any], truth: np.ndarray[Any, Any]) -> float:
    """The softmax scale with the least log-loss on out-of-fold scores (temperature scaling)."""
    best, best_loss = 1.0, float("inf")
    rows = np.arange(len(truth))
    for scale in np.geomspace(0.1, 100.0, 121):
        z = scores * scale
        z = z - z.max(axis=1, keepdims=True)
        log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss = float(-log_probs[rows, truth].mean())
        if loss < best_loss:
            best, best_loss = float(scale), loss
    return best


def _head(svm: LinearSVC, scale: float) -> LinearHead:
    classes = tuple(str(c) for c in svm.classes_)
    coef = np.asarray(svm.coef_, dtype=np.float64)
    intercept = np.asarray(svm.intercept_, dtype=np.float64)
    if len(classes) == 2:
        coef = np.vstack([np.zeros_like(coef[0]), coef[0]])
        intercept = np.array([0.0, intercept[0]])
    return LinearHead(classes, np.ascontiguousarray(coef), intercept, scale)


def fit_model(
    texts: Sequence[str],
    labels: Mapping[str, Sequence[str]],
    scales: Mapping[str, float],
    settings: TrainSettings,
) -> TextModel:
    """Fit the vectoriser once and a linear SVM per head (``unit``, ``type``) on all rows."""
    vectorizer = _vectorizer(settings)
    matrix = vectorizer.fit_transform(texts)
    heads = {}
    for head, values in labels.items():
        svm = LinearSVC(C=settings.regularisation_c, random_state=0)
        svm.fit(matrix, list(values))
        heads[head] = _head(svm, scales[head])
    vocabulary = {str(gram): int(i) for gram, i in vectorizer.vocabulary_.items()}
    return TextModel(
        vocabulary, np.asarray(vectorizer.idf_, dtype=np.float64), heads, (1, settings.ngram_max)
    )


def cross_validate(
    history: History, settings: TrainSettings, seed: int = 0
) -> tuple[int, dict[str, HeadScore], dict[str, float]]:
    """Stratified k-fold accuracy for each head; returns (smallest k, scores, softmax scales)."""
    scores: dict[str, HeadScore] = {}
    scales: dict[str, float] = {}
    folds = settings.max_folds
    for head, labels in (("unit", history.units), ("type", history.types)):
        k = _folds(labels, "单位" if head == "unit" else "类型", settings)
        folds = min(folds, k)
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        decision = cross_val_predict(
            _pipeline(settings), history.texts, labels, cv=splitter, method="decision_function"
        )
        decision = _two_columns(np.asarray(decision, dtype=np.float64))
        classes = sorted(set(labels))
        truth = np.array([classes.index(label) for label in labels])
        predicted = [classes[i] for i in decision.argmax(axis=1)]
        scores[head] = _score(head, labels, predicted)
        scales[head] = _calibrate(decision, truth)
    return folds, scores, scales


def train(
    csv_path: Path,
    out: Path | None = DEFAULT_OUT,
    *,
    known_units: Collection[str] | None = None,
    settings: TrainSettings | None = None,
) -> TrainReport:
    """Read, cross-validate, fit on everything and (when ``out`` is given) save the model.

    Raises :class:`TrainError` when the file is unusable or fewer than
    :attr:`TrainSettings.min_rows` rows remain. CPU- and file-bound: call it from a thread in
    async code.
    """
    settings = settings or TrainSettings()
    history = read_history(csv_path, known_units, settings)
    if len(history.texts) < settings.min_rows:
        raise TrainError(
            f"{csv_path}: 可用数据只有 {len(history.texts)} 行（跳过 {len(history.bad_rows)} 行），"
            f"至少需要 {settings.min_rows} 行"
        )
    folds, scores, scales = cross_validate(history, settings)
    model = fit_model(
        history.texts, {"unit": history.units, "type": history.types}, scales, settings
    )
    manifest: dict[str, Any] = {}
    if out is not None:
        manifest = save_model(
            model,
            out,
            rows=len(history.texts),
            cv_accuracy={head: round(score.accuracy, 4) for head, score in scores.items()},
            cv_folds=folds,
        )
    return TrainReport(len(history.texts), history.bad_rows, folds, scores, out, manifest)


def manifest_path(model_path: Path) -> Path:
    """Where the manifest of a model file lives (``model.joblib.manifest.json``)."""
    return model_path.with_name(model_path.name + ".manifest.json")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_model(model: TextModel, path: Path, **extra: Any) -> dict[str, Any]:
    """Write the model (atomically) and then its manifest; returns the manifest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    joblib.dump(model, partial, compress=3)
    os.replace(partial, path)
    manifest = {
        "format": MANIFEST_FORMAT,
        "sklearn_version": sklearn.__version__,
        "sha256": _sha256(path),
        "classes": {head: list(linear.classes) for head, linear in model.heads.items()},
        "features": len(model.vocabulary),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }
    target = manifest_path(path)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, target)
    return manifest


def load_model(path: Path) -> TextModel:
    """Load a model saved by :func:`save_model`, checking its manifest first.

    Raises :class:`ModelError` when the model or manifest is missing, the file's SHA-256 differs
    from the manifest (altered or half-copied), it was trained with another scikit-learn
    version (its TF-IDF semantics are scikit-learn's), or its classes differ from the manifest.
    """
    meta_path = manifest_path(path)
    if not path.is_file():
        raise ModelError(f"模型文件不存在：{path}（先运行 hotline router train）")
    try:
        manifest = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"模型清单不存在：{meta_path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"模型清单无法解析：{meta_path}：{exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ModelError(f"模型清单格式不符：{meta_path}（需要 format {MANIFEST_FORMAT}）")
    if manifest.get("sklearn_version") != sklearn.__version__:
        raise ModelError(
            f"模型由 scikit-learn {manifest.get('sklearn_version')} 训练，当前为 {sklearn.__version__}，"
            f"请重新训练：hotline router train（{path}）"
        )
    actual = _sha256(path)
    if manifest.get("sha256") != actual:
        raise ModelError(
            f"模型文件校验失败：{path} 的 sha256 为 {actual[:12]}…，清单记录 {str(manifest.get('sha256'))[:12]}…"
        )
    model = joblib.load(path)
    if not isinstance(model, TextModel):
        raise ModelError(f"{path} 不是路由模型（{type(model).__name__}）")
    classes = {head: list(linear.classes) for head, linear in model.heads.items()}
    if classes != manifest.get("classes"):
        raise ModelError(f"模型类别与清单不符：{path}")
    return model


def main(argv: Sequence[str] | None = None, known_units: Collection[str] | None = None) -> int:
    """``hotline router train HISTORY.csv [--out PATH]``; returns the exit status.

    ``known_units`` (the unit ids of the loaded config) makes rows naming another unit bad rows;
    ``--units`` gives them on the command line instead.
    """
    parser = argparse.ArgumentParser(
        prog="hotline router train", description="从历史工单训练派单模型"
    )
    parser.add_argument("history", type=Path, help="CSV：text, unit, type 列")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"模型文件（默认 {DEFAULT_OUT}）"
    )
    parser.add_argument("--units", help="允许的单位 id，逗号分隔（默认取配置）")
    parser.add_argument("--min-rows", type=int, help="至少需要的可用行数")
    parser.add_argument("--folds", type=int, help="交叉验证最多折数")
    args = parser.parse_args(argv)
    if args.units:
        known_units = {u.strip() for u in args.units.split(",") if u.strip()}
    overrides = {"min_rows": args.min_rows, "max_folds": args.folds}
    try:
        settings = TrainSettings.model_validate(
            {k: v for k, v in overrides.items() if v is not None}
        )
        report = train(args.history, args.out, known_units=known_units, settings=settings)
    except TrainError as exc:
        print(f"训练失败：{exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # pydantic's ValidationError: a bad --min-rows / --folds
        print(f"参数错误：{exc}", file=sys.stderr)
        return 2
    print(report.format())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
