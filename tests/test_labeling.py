"""Budgeted labels: the oracle never exceeds its budget, labels record their source, active selection
spends the budget where the detector is least sure, the human source works at a terminal and refuses without one."""

import pytest

from robot_si.data import EpisodeStore, read_label_set
from robot_si.verify import (
    DetectorConfig,
    HumanLabelSource,
    LabelBudgetExhausted,
    OracleLabelSource,
    SuccessDetector,
    label_store,
    labelling_summary,
    make_label_source,
    select_for_labeling,
)
from robot_si.verify.features import HashingEncoders
from robot_si.verify.testing import synthetic_verifier_store


@pytest.fixture(scope="module")
def store_and_detector(tmp_path_factory):
    store = synthetic_verifier_store(tmp_path_factory.mktemp("labeling") / "store", num_demos=2, num_autonomous=6)
    detector = SuccessDetector(DetectorConfig(encoder="hashing", epochs=2, hidden_dim=32, num_heads=2), encoders=HashingEncoders())
    detector.fit_stores([store])
    return store, detector


def test_active_selection_picks_episodes_nearest_the_threshold():
    probs = {"a": 0.99, "b": 0.72, "c": 0.55, "d": 0.05, "e": 0.66}
    assert select_for_labeling(probs, 2, threshold=0.7) == ["b", "e"]
    assert select_for_labeling(probs, 2, strategy="uncertainty") == ["c", "e"]
    assert select_for_labeling(probs, 0) == []
    assert len(select_for_labeling(probs, 3, strategy="random")) == 3
    # accepted: a seeded sample of the episodes at or above the threshold only
    assert sorted(select_for_labeling(probs, 5, threshold=0.66, strategy="accepted")) == ["a", "b", "e"]
    picks = select_for_labeling(probs, 2, threshold=0.66, strategy="accepted", seed=3)
    assert len(picks) == 2 and set(picks) <= {"a", "b", "e"}
    assert picks == select_for_labeling(probs, 2, threshold=0.66, strategy="accepted", seed=3)
    with pytest.raises(ValueError, match="strategy"):
        select_for_labeling(probs, 1, strategy="loudest")


def test_mixed_selection_samples_low_scores_too_deterministically():
    # 20 episodes; the threshold is high, so "threshold" alone spends everything on high-probability episodes
    probs = {f"ep{i:02d}": i / 20 for i in range(20)}
    nearest = select_for_labeling(probs, 6, threshold=0.9, strategy="threshold")
    assert min(probs[e] for e in nearest) >= 0.7
    mixed = select_for_labeling(probs, 6, threshold=0.9, strategy="mixed", seed=3)
    assert len(mixed) == len(set(mixed)) == 6
    assert mixed[:3] == nearest[:3]  # half the budget (default share) nearest the threshold ...
    sample = mixed[3:]  # ... and one draw from each of 3 probability strata of the other 17 (lowest first)
    assert [probs[e] for e in sample] == sorted(probs[e] for e in sample)
    assert probs[sample[0]] < 0.3 and not set(sample) & set(mixed[:3])
    assert select_for_labeling(probs, 6, threshold=0.9, strategy="mixed", seed=3) == mixed  # same seed, same pick
    assert any(select_for_labeling(probs, 6, threshold=0.9, strategy="mixed", seed=s) != mixed for s in range(4, 10))
    # the share is configurable: 0 is the threshold strategy, 1 is all sampled (one draw per stratum)
    assert select_for_labeling(probs, 6, threshold=0.9, strategy="mixed", random_share=0.0) == nearest
    everywhere = select_for_labeling(probs, 4, threshold=0.9, strategy="mixed", random_share=1.0, seed=0)
    assert [int(probs[e] * 20) // 5 for e in everywhere] == [0, 1, 2, 3]
    assert len(select_for_labeling(probs, 5, strategy="mixed", random_share=0.3)) == 5
    # a budget past the pool labels every episode; ties are broken by episode id
    assert sorted(select_for_labeling(probs, 50, strategy="mixed")) == sorted(probs)
    assert select_for_labeling({"b": 0.5, "a": 0.5, "c": 0.1}, 1, threshold=0.5, strategy="mixed", random_share=0.0) == ["a"]
    for bad in (-0.1, 1.5, float("nan"), True, "half", None):
        with pytest.raises(ValueError, match="random_share"):
            select_for_labeling(probs, 2, strategy="mixed", random_share=bad)
    with pytest.raises(ValueError, match="budget"):
        select_for_labeling(probs, -1, strategy="mixed")


def test_label_store_mixed_strategy_records_seed_and_share(tmp_path, store_and_detector):
    _, detector = store_and_detector
    store = synthetic_verifier_store(tmp_path / "store", num_demos=2, num_autonomous=6)
    oracle = OracleLabelSource(budget=4)
    version = label_store(store, detector, label_source=oracle, strategy="mixed", seed=7, random_share=0.5)
    probs = detector.predict_episodes(store, [f"auto{i}" for i in range(6)])
    assert oracle.asked == select_for_labeling(probs, 4, threshold=detector.threshold, strategy="mixed", seed=7)
    import json

    record = json.loads(read_label_set(store.root, version).note)
    assert record["strategy"] == "mixed" and record["selection_seed"] == 7 and record["random_share"] == 0.5


def test_oracle_budget_is_enforced_and_counted(store_and_detector):
    store, _ = store_and_detector
    oracle = OracleLabelSource(budget=2)
    truth = store.audit_table()
    answers = oracle.ask_many(store, ["auto0", "auto1"])
    assert answers == {"auto0": truth["auto0"], "auto1": truth["auto1"]} and oracle.spent == 2
    with pytest.raises(LabelBudgetExhausted, match="budget of 2 is spent"):
        oracle.ask(store, "auto2")
    with pytest.raises(LabelBudgetExhausted, match="only 0 of 2 remain"):
        oracle.ask_many(store, ["auto3"])
    assert oracle.spent == 2 and oracle.asked == ["auto0", "auto1"]
    with pytest.raises(ValueError, match="budget"):
        OracleLabelSource(budget=-1)


def test_label_store_spends_the_budget_records_sources_and_carries_labels_forward(store_and_detector):
    store, detector = store_and_detector
    first = OracleLabelSource(budget=3)
    version = label_store(store, detector, label_source=first, round=1)
    labels = read_label_set(store.root, version).episode_labels
    oracle_labelled = {e for e, l in labels.items() if l.label_source == "oracle"}
    assert first.spent == 3 and oracle_labelled == set(first.asked)
    assert all(e.startswith("auto") for e in oracle_labelled)  # never spent on demos
    assert all(l.label_source == "detector" for e, l in labels.items() if e not in oracle_labelled)
    truth = store.audit_table()
    assert all(labels[e].label is truth[e] for e in oracle_labelled)
    summary = labelling_summary(store.root, version)
    assert summary["labels_spent"] == 3 and summary["labelled_sample"]["label"] == [truth[e] for e in first.asked]

    # the next round keeps those labels and spends its budget on episodes not asked before
    second = OracleLabelSource(budget=10)
    version = label_store(store, detector, label_source=second, budget=2)
    labels = read_label_set(store.root, version).episode_labels
    assert second.spent == 2 and not set(second.asked) & oracle_labelled
    assert sum(l.label_source == "oracle" for l in labels.values()) == 5


def test_human_source_refuses_without_a_terminal():
    with pytest.raises(RuntimeError, match="interactive terminal"):
        HumanLabelSource(budget=1)  # pytest's stdin is not a TTY
    with pytest.raises(ValueError, match="unknown label source"):
        make_label_source("crowd")
    assert make_label_source("none") is None


def test_human_source_shows_media_and_reads_answers(store_and_detector, tmp_path):
    store, _ = store_and_detector
    replies = iter(["maybe", "y", "n", "s"])
    shown = []
    human = HumanLabelSource(budget=3, media_dir=tmp_path / "media", input_fn=lambda prompt: next(replies), print_fn=shown.append)
    assert human.ask_many(store, ["auto0", "auto1", "auto2"]) == {"auto0": True, "auto1": False, "auto2": None}
    assert human.spent == 3 and (tmp_path / "media" / "auto0.gif").exists() and (tmp_path / "media" / "auto0_sheet.png").exists()
    assert any("auto0.gif" in line for line in shown)


def test_empty_store_is_refused(tmp_path, store_and_detector):
    _, detector = store_and_detector
    empty = EpisodeStore.create(tmp_path / "empty", fps=10, image_size=32, state_dim=8, action_dim=4)
    with pytest.raises(ValueError, match="no episodes"):
        label_store(empty, detector)
