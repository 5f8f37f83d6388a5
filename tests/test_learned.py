"""The learned stages: features, heads, the artifact, and the stages in every tier."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from eval.training import Config, make_examples, train_heads
from service.heads import HeadsError, load_heads
from service.pipeline import Pipeline
from service.settings import Settings
from tests.conftest import ROOT

REFERENCES = ROOT / "eval" / "data" / "references.jsonl"
FIXED_THRESHOLDS = {"demand": 0.5, "position": 0.5, "actor": 0.0}


class FakeLocal:
    """Stands in for a local model: features are a fixed function of each sentence's words."""

    model_id = "fake-reader"
    hidden = 16

    def sentence_features(
        self, texts: list[str], spans: list[list[tuple[int, int]]], *, layers: list[int]
    ) -> list[np.ndarray]:
        out = []
        for text, text_spans in zip(texts, spans, strict=True):
            array = np.zeros((len(layers), len(text_spans), 2, self.hidden), np.float32)
            for j, (s, e) in enumerate(text_spans):
                for word in text[s:e].lower().split():
                    h = int(hashlib.sha256(word.encode()).hexdigest()[:8], 16)
                    array[:, j, 0, h % self.hidden] += 1.0
                    array[:, j, 1, (h // 7) % self.hidden] += 1.0
            out.append(array)
        return out


class FakeChat:
    """What the pipeline needs of a chat model for the learned stages: its local model."""

    def __init__(self, local: Any) -> None:
        self.local = local
        self.model_id = local.model_id


def seed_pairs() -> list[tuple[dict[str, Any], dict[str, Any], str]]:
    pairs = []
    for line in REFERENCES.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        seed = ROOT / "seeds" / f"{row['id']}.txt"
        if seed.is_file():
            pairs.append((row, {"id": row["id"], "text": seed.read_text("utf-8")}, "seeds"))
    return pairs


def features_of(examples: list[Any], local: Any, layers: tuple[int, ...]) -> dict[str, Any]:
    arrays = local.sentence_features(
        [e.text for e in examples],
        [[(s.start, s.end) for s in e.sentences] for e in examples],
        layers=list(layers),
    )
    return {e.id: a for e, a in zip(examples, arrays, strict=True)}


@pytest.fixture(scope="module")
def seed_examples() -> list[Any]:
    examples = make_examples(seed_pairs(), Settings())
    assert len(examples) == 2 and all(e.demand.any() and e.position.any() for e in examples)
    return examples


def fake_heads(seed_examples: list[Any], tmp_path: Path, monkeypatch: Any) -> Path:
    import eval.training as training

    monkeypatch.setattr(training, "LAYERS", (15,))
    features = features_of(seed_examples, FakeLocal(), (15,))
    heads = train_heads(
        seed_examples,
        features,
        Config(15, "mean", 0.1),
        thresholds=FIXED_THRESHOLDS,
        model_id=FakeLocal.model_id,
    )
    path = tmp_path / "heads.npz"
    heads.save(path)
    return path


def fake_pipeline(heads: Path, tmp_path: Path) -> Pipeline:
    """Both learned stages on the fake reader with these heads."""
    settings = Settings(summarizer="learned", extractor="learned", heads=heads, cache_dir=tmp_path)
    return Pipeline(settings=settings, model=FakeChat(FakeLocal()))  # type: ignore[arg-type]


def test_heads_trained_on_a_fixed_set_reproduce_exactly(
    seed_examples: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_heads(fake_heads(seed_examples, tmp_path / "a", monkeypatch))
    second = load_heads(fake_heads(seed_examples, tmp_path / "b", monkeypatch))
    assert first.heads.keys() == {"demand", "position", "stance", "actor", "salience"}
    for name, head in first.heads.items():
        other = second.heads[name]
        assert np.array_equal(head.coef, other.coef) and np.array_equal(
            head.intercept, other.intercept
        ), name
    assert first.sha256 == second.sha256


def test_artifact_is_refused_for_another_model_or_layout(
    seed_examples: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = fake_heads(seed_examples, tmp_path, monkeypatch)
    assert load_heads(path, model_id="fake-reader").layer == 15
    with pytest.raises(HeadsError, match=r"trained on 'fake-reader' features.*'SmolLM2"):
        load_heads(path, model_id="SmolLM2-135M-Instruct")
    data = dict(np.load(path))
    meta = json.loads(bytes(data["metadata"]).decode())
    meta["layout"] = "v0: something else"
    data["metadata"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(tmp_path / "old.npz", **data)
    with pytest.raises(HeadsError, match="feature layout 'v0: something else'"):
        load_heads(tmp_path / "old.npz")
    with pytest.raises(HeadsError, match="no heads artifact"):
        load_heads(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not an archive")
    with pytest.raises(HeadsError, match="not a heads artifact"):
        load_heads(tmp_path / "junk.npz")


def assert_grounded(result: Any) -> None:
    text = result.text
    for item in [*result.demands, *result.positions]:
        assert text[item.start : item.end] == item.quote
        assert item.actor.lower() in text.lower(), item.actor
        for span in (getattr(item, "target", None), getattr(item, "conditions", None)):
            assert span is None or span in text
    sentences = [s.text for s in __import__("service.article").article.split_sentences(text)]
    assert result.summary and all(part in text for part in sentences_of(result.summary, sentences))


def sentences_of(summary: str, sentences: list[str]) -> list[str]:
    return [s for s in sentences if s in summary] or [summary]


def test_learned_stages_run_on_the_fake_reader(
    seed_examples: list[Any],
    seed_articles: list[dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = fake_heads(seed_examples, tmp_path, monkeypatch)
    pipeline = fake_pipeline(path, tmp_path)
    results = pipeline.batch(seed_articles)
    assert any(r.demands or r.positions for r in results)
    for result in results:
        assert_grounded(result)
        assert result.meta.model == "fake-reader"
        assert result.meta.heads == hashlib.sha256(path.read_bytes()).hexdigest()
    alone = pipeline.invoke(seed_articles[1])
    assert alone.model_dump(exclude={"meta"}) == results[1].model_dump(exclude={"meta"})


def test_learned_stages_refuse_heads_of_another_model(
    seed_examples: list[Any],
    seed_articles: list[dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = fake_heads(seed_examples, tmp_path, monkeypatch)

    class OtherLocal(FakeLocal):
        model_id = "another-reader"

    settings = Settings(extractor="learned", heads=path, cache_dir=tmp_path)
    pipeline = Pipeline(settings=settings, model=FakeChat(OtherLocal()))  # type: ignore[arg-type]
    (outcome,) = pipeline.run(seed_articles[:1])
    assert isinstance(outcome, HeadsError) and "another-reader" in outcome.message


def test_learned_stages_need_a_local_model() -> None:
    from service.errors import ModelError

    with pytest.raises(ModelError, match="need a model"):
        Pipeline(settings=Settings(extractor="learned"))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_tiny_model_features_are_pooled_per_sentence_and_batch_independent(
    tiny_model_dir: Path, seed_articles: list[dict[str, str]], dtype: str
) -> None:
    """One article per forward pass: its features are the same bits alone and in a batch, in
    bfloat16 too (the precision ``auto`` gives the learned stages on a bfloat16 CPU)."""
    from service.article import split_sentences
    from service.model import LocalModel

    local = LocalModel.from_folder(tiny_model_dir, model_id="tiny", dtype=dtype)
    texts = [a["text"] for a in seed_articles]
    spans = [[(s.start, s.end) for s in split_sentences(t)] for t in texts]
    together = local.sentence_features(texts, spans, layers=[1, 2])
    alone = local.sentence_features(texts[1:], spans[1:], layers=[1, 2])
    assert together[1].shape == (2, len(spans[1]), 2, 32)
    assert np.array_equal(together[1], alone[0])
    assert not np.allclose(together[1][0], together[1][1])  # the layers differ
    # A sentence's mean state depends only on the text up to its end (causal reading).
    cut = spans[1][2][1]
    (prefix,) = local.sentence_features([texts[1][:cut]], [spans[1][:3]], layers=[2])
    assert np.allclose(prefix[0], together[1][1, :3], atol=1e-5 if dtype == "float32" else 1e-2)
    # Chat markers in an article are read as plain text, never as control tokens.
    marker = "<|im_end|>\n<|im_start|>system"
    ids = local.tokenizer(marker, add_special_tokens=False, split_special_tokens=True)
    assert local.tokenizer.convert_tokens_to_ids("<|im_end|>") not in ids["input_ids"]


def test_learned_stages_on_the_tiny_model(
    tiny_model_dir: Path,
    seed_examples: list[Any],
    seed_articles: list[dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import eval.training as training
    from service.model import load_model

    monkeypatch.setattr(training, "LAYERS", (1,))
    settings = Settings(model=str(tiny_model_dir), dtype="float32", cache_dir=tmp_path)
    chat = load_model(settings)
    features = features_of(seed_examples, chat.local, (1,))  # type: ignore[attr-defined]
    heads = train_heads(
        seed_examples,
        features,
        Config(1, "mean", 0.1),
        thresholds={"demand": 0.3, "position": 0.3, "actor": 0.0},
        model_id=tiny_model_dir.name,
    )
    heads.save(tmp_path / "tiny.npz")
    learned = settings.model_copy(
        update={"summarizer": "learned", "extractor": "learned", "heads": tmp_path / "tiny.npz"}
    )
    for result in Pipeline(settings=learned, model=chat).batch(seed_articles):
        assert_grounded(result)
        assert result.meta.model == tiny_model_dir.name


def varied_articles(texts: list[str]) -> tuple[list[str], list[list[tuple[int, int]]]]:
    """Articles of very different lengths (a few tokens to a few hundred), with their spans."""
    from service.article import split_sentences

    cases = [
        *texts,
        "The union demanded a raise. The mayor said no.",
        "Talks ended without agreement, officials said.",
        texts[0][:600],
        "",
    ]
    return cases, [[(s.start, s.end) for s in split_sentences(t)] for t in cases]


# Packed features equal one-by-one features up to float32 rounding of differently shaped matrix
# products: measured within 1e-6 of the largest feature on the tiny and the embedded model.
PACKED_TOLERANCE = 1e-5


def assert_packed_equal(
    packed: list[np.ndarray], alone: list[np.ndarray], tolerance: float
) -> None:
    for p, a in zip(packed, alone, strict=True):
        assert p.shape == a.shape
        if a.size:
            assert np.abs(p - a).max() <= tolerance * np.abs(a).max()


def test_packed_articles_read_as_if_alone_on_the_tiny_model(
    tiny_model_dir: Path, seed_articles: list[dict[str, str]]
) -> None:
    """Several articles per forward pass (right-padded, the padding masked): no article attends
    to another, and a window-long article still goes alone."""
    from service.model import LocalModel, _packs

    local = LocalModel.from_folder(tiny_model_dir, model_id="tiny", dtype="float32")
    texts, spans = varied_articles([a["text"] for a in seed_articles])
    alone = local.sentence_features(texts, spans, layers=[1, 2])
    for budget in (64, 1024, 4096):
        packed = local.sentence_features(texts, spans, layers=[1, 2], pack_tokens=budget)
        assert_packed_equal(packed, alone, PACKED_TOLERANCE)
    # windows: an article longer than the window is read window by window, never packed
    windowed = local.sentence_features(
        texts, spans, layers=[1, 2], window_tokens=256, pack_tokens=4096
    )
    assert_packed_equal(
        windowed,
        local.sentence_features(texts, spans, layers=[1, 2], window_tokens=256),
        PACKED_TOLERANCE,
    )
    assert _packs([0, 1, 2, 3], [30, 10, 20, 100], 64) == [[1, 2], [0], [3]]


@pytest.mark.model
def test_packed_articles_read_as_if_alone_on_the_embedded_model(
    seed_articles: list[dict[str, str]],
) -> None:
    from service.model import LocalModel, convert_gguf, embedded_gguf_path

    folder = convert_gguf(embedded_gguf_path(), Settings().cache_dir)
    local = LocalModel.from_folder(folder, model_id="embedded", dtype="float32")
    texts, spans = varied_articles([a["text"] for a in seed_articles])
    alone = local.sentence_features(texts, spans, layers=[9, 15])
    packed = local.sentence_features(texts, spans, layers=[9, 15], pack_tokens=4096)
    assert_packed_equal(packed, alone, PACKED_TOLERANCE)


@pytest.mark.model
def test_bfloat16_features_of_an_article_are_the_same_alone_and_in_a_batch(
    seed_articles: list[dict[str, str]],
) -> None:
    """The learned stages read one article per forward pass, so in bfloat16 (the precision
    ``auto`` picks for them on a bfloat16 CPU) an article's features do not depend on what
    else is read in the same call, unlike bfloat16 generation (tests/test_embedded.py)."""
    from service.model import LocalModel, convert_gguf, embedded_gguf_path

    folder = convert_gguf(embedded_gguf_path(), Settings().cache_dir)
    local = LocalModel.from_folder(folder, model_id="embedded", dtype="bfloat16")
    texts, spans = varied_articles([a["text"] for a in seed_articles])
    together = local.sentence_features(texts, spans, layers=[15])
    for i in (0, 1, len(texts) - 2):
        (alone,) = local.sentence_features([texts[i]], [spans[i]], layers=[15])
        assert np.array_equal(alone, together[i])


def test_auto_precision_follows_the_cpu_for_the_learned_stages_and_keys_the_cache(
    tiny_model_dir: Path, seed_examples: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STANDPOINT_DTYPE=auto (the default): the learned stages read the model in bfloat16 on a
    CPU with native bfloat16, float32 elsewhere and for a stage that generates; meta and the
    result cache name the precision the model actually ran in."""
    import eval.training as training
    from service import machine
    from service.pipeline import build_pipeline

    monkeypatch.setattr(training, "LAYERS", (1,))
    chat_settings = Settings(model=str(tiny_model_dir), dtype="float32", cache_dir=tmp_path)
    from service.model import load_model

    chat = load_model(chat_settings)
    heads = train_heads(
        seed_examples,
        features_of(seed_examples, chat.local, (1,)),  # type: ignore[attr-defined]
        Config(1, "mean", 0.1),
        thresholds=FIXED_THRESHOLDS,
        model_id=tiny_model_dir.name,
    )
    heads.save(tmp_path / "tiny.npz")
    keys = {}
    for native, flags in ((True, frozenset({"amx_bf16"})), (False, frozenset({"avx2"}))):
        monkeypatch.setattr(machine, "cpu_flags", lambda flags=flags: flags)
        settings = Settings(
            model=str(tiny_model_dir),
            summarizer="learned",
            extractor="learned",
            heads=tmp_path / "tiny.npz",
            cache_dir=tmp_path,
            dtype="auto",
        )
        pipeline = build_pipeline(settings)
        expected = "bfloat16" if native else "float32"
        assert pipeline.dtype == expected == pipeline.model.local.dtype  # type: ignore[union-attr]
        result = pipeline.invoke({"id": "a", "text": "The union demanded a raise on Monday."})
        assert result.meta.dtype == expected
        keys[expected] = pipeline.settings_key
        generating = build_pipeline(settings.model_copy(update={"summarizer": "model-rank"}))
        assert generating.dtype == "float32"
    assert keys["bfloat16"] != keys["float32"] and "bfloat16" in keys["bfloat16"]
    rules = build_pipeline(Settings(summarizer="lead", extractor="rules", cache_dir=tmp_path))
    assert rules.invoke({"id": "a", "text": "The union demanded a raise."}).meta.dtype is None


@pytest.mark.model
def test_learned_stages_keep_the_grounding_invariant_on_the_embedded_model(
    seed_examples: list[Any],
    seed_articles: list[dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Heads trained on the embedded model's own features (from the seeds' references), then
    the learned stages on the seeds: every output field stays a span or name of the article."""
    import eval.training as training
    from service.pipeline import build_pipeline

    monkeypatch.setattr(training, "LAYERS", (15,))
    settings = Settings(cache_dir=tmp_path)
    pipeline = build_pipeline(settings, load_model=True)
    local = pipeline.model.local  # type: ignore[union-attr]
    heads = train_heads(
        seed_examples,
        features_of(seed_examples, local, (15,)),
        Config(15, "mean", 0.1),
        thresholds=FIXED_THRESHOLDS,
        model_id=local.model_id,
    )
    heads.save(tmp_path / "heads.npz")
    learned = settings.model_copy(
        update={"summarizer": "learned", "extractor": "learned", "heads": tmp_path / "heads.npz"}
    )
    results = build_pipeline(learned, model=pipeline.model).batch(seed_articles)
    for result in results:
        assert_grounded(result)
        assert result.meta.model == "SmolLM2-135M-Instruct" and result.meta.heads
    assert sum(len(r.demands) + len(r.positions) for r in results) > 0


def test_heads_are_loaded_once_for_every_call_of_a_pipeline(
    seed_examples: list[Any],
    seed_articles: list[dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each call runs its stages on a copy of the pipeline's context (with the call's cancel
    # event); the copies share the heads instead of each loading its own.
    import service.heads

    path = fake_heads(seed_examples, tmp_path, monkeypatch)
    loads: list[Path] = []

    def counting_load(p: Path, **kwargs: Any) -> Any:
        loads.append(p)
        return load_heads(p, **kwargs)

    monkeypatch.setattr(service.heads, "load_heads", counting_load)
    pipeline = fake_pipeline(path, tmp_path)
    first = pipeline.run(seed_articles)
    second = pipeline.run(seed_articles[:1])
    assert all(not isinstance(r, Exception) for r in [*first, *second])
    assert loads == [path]


@pytest.mark.model
def test_the_default_is_the_learned_stages_with_the_packaged_heads(
    seed_articles: list[dict[str, str]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No stage settings at all: the learned stages read the embedded model with the heads
    shipped in the package, which were trained on its features at the default dtype."""
    from service.heads import DEFAULT_HEADS
    from service.pipeline import build_pipeline

    monkeypatch.delenv("STANDPOINT_SUMMARIZER", raising=False)
    monkeypatch.delenv("STANDPOINT_EXTRACTOR", raising=False)
    settings = Settings(cache_path=tmp_path / "results.sqlite")
    assert (settings.summarizer, settings.extractor) == ("learned", "learned")
    heads = load_heads(DEFAULT_HEADS, model_id="SmolLM2-135M-Instruct")
    # trained on float32 features, and float32 is the default until the heads are measured on
    # bfloat16 features (STANDPOINT_DTYPE=auto picks bfloat16 on a CPU that does it natively)
    assert heads.metadata["dtype"] == "float32" == settings.dtype
    assert heads.metadata["articles"] >= 150
    results = build_pipeline(settings).batch(seed_articles)
    for result in results:
        assert_grounded(result)
        assert result.meta.model == "SmolLM2-135M-Instruct"
        assert result.meta.heads == hashlib.sha256(DEFAULT_HEADS.read_bytes()).hexdigest()
        assert result.meta.dtype == "float32"
        assert len(result.summary.split()) >= 20
    assert sum(len(r.demands) + len(r.positions) for r in results) >= 4


def test_the_salience_head_has_its_own_regularisation(
    seed_examples: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import eval.training as training

    monkeypatch.setattr(training, "LAYERS", (15,))
    features = features_of(seed_examples, FakeLocal(), (15,))

    def heads(config: Config) -> Any:
        return train_heads(
            seed_examples, features, config, thresholds=FIXED_THRESHOLDS, model_id="fake"
        )

    same, own = heads(Config(15, "mean", 0.1)), heads(Config(15, "mean", 0.1, salience_c=0.001))
    assert np.array_equal(same.heads["demand"].coef, own.heads["demand"].coef)
    shrunk = np.abs(own.heads["salience"].coef).sum()
    assert 0 < shrunk < 0.5 * np.abs(same.heads["salience"].coef).sum()


def test_both_learned_stages_share_one_model_pass_per_article_and_nothing_outlives_a_call(
    seed_examples: list[Any],
    seed_articles: list[dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The features travel on each article's Work: the summarizer reads them, the extractor
    # reuses them, and a second call reads the article again (no process-wide cache).
    path = fake_heads(seed_examples, tmp_path, monkeypatch)
    pipeline = fake_pipeline(path, tmp_path)
    local = pipeline.model.local  # type: ignore[union-attr]
    read: list[str] = []
    real = local.sentence_features

    def counting(texts: list[str], spans: Any, *, layers: list[int]) -> list[np.ndarray]:
        read.extend(texts)
        return real(texts, spans, layers=layers)

    local.sentence_features = counting
    results = pipeline.run(seed_articles)
    assert all(r.summary and (r.demands or r.positions) for r in results)  # type: ignore[union-attr]
    assert len(read) == len(seed_articles) == len(set(read))
    pipeline.run(seed_articles[:1])
    assert len(read) == len(seed_articles) + 1


def test_the_cross_validated_report_has_field_metrics_and_paired_differences(
    seed_examples: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import eval.training as training
    from eval.crossval import cross_validate

    monkeypatch.setattr(training, "LAYERS", (15,))
    # Both seeds in every fold (copies under new ids), so each fold trains and scores.
    examples = [
        dataclasses.replace(e, id=f"{e.id}-{k}", fold=k) for e in seed_examples for k in range(5)
    ]
    base = features_of(seed_examples, FakeLocal(), (15,))
    features = {e.id: base[e.id.rsplit("-", 1)[0]] for e in examples}
    config = Config(15, "mean", 0.1)
    cv, _ = cross_validate(examples, features, config, model_id=FakeLocal.model_id)
    fields = cv["extraction"]["all"]["learned"]["fields"]
    assert set(fields) >= {"what_f1", "target_found", "what_copied", "actor_exact"}
    assert 0.0 <= fields["what_copied"]["rate"] <= 1.0
    assert cv["extraction"]["all"]["rules"]["fields"]["what_f1"]["rate"] >= 0.0
    assert "what_f1: learned - rules" in cv["differences"]["all"]


def test_the_learning_curve_trains_nested_subsets_and_scores_every_head(
    seed_examples: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import eval.learning_curve as learning_curve
    import eval.training as training

    monkeypatch.setattr(training, "LAYERS", (15,))
    monkeypatch.setattr(learning_curve, "FIRST_SETS", ("seeds",))
    examples = [
        dataclasses.replace(e, id=f"{e.id}-{k}", fold=k % 5)
        for e in seed_examples
        for k in range(10)
    ]
    base = features_of(seed_examples, FakeLocal(), (15,))
    features = {e.id: base[e.id.rsplit("-", 1)[0]] for e in examples}
    quarter, half = (learning_curve.subset(examples, s) for s in (0.25, 0.5))
    assert {e.id for e in quarter} < {e.id for e in half} and len(half) == 10
    report = learning_curve.curve(examples, features, Config(15, "mean", 0.1), "fake-reader")
    assert {(r["pool"], r["share"]) for r in report["rows"]} == {
        (pool, share) for pool in ("first 152", "all") for share in (0.25, 0.5, 1.0)
    }
    for row in report["rows"]:
        for key in ("demand_ap", "position_ap", "stance_accuracy", "actor_top1"):
            assert 0.0 <= row[key] <= 1.0, (row["pool"], row["share"], key)
    assert "| all | 100% |" in learning_curve.render(report)
