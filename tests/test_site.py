"""Ranking with ties and method cards (the build itself: tests/test_leaderboard.py)."""

from leaderboard.site import method_card, rank_entries


def _e(method, mean, lo, hi):
    return {"method": method, "metrics": {"fid": {"mean": mean, "ci_low": lo, "ci_high": hi}}}


def test_rank_entries_orders_by_direction_and_ties_overlapping_intervals():
    entries = [_e("c", 30.0, 28.0, 32.0), _e("a", 10.0, 8.0, 12.0), _e("b", 11.0, 11.5, 14.0),
               _e("d", None, None, None), _e("e", 20.0, 19.0, 21.0)]
    ranked = rank_entries(entries, "fid", "min")
    # a [8, 12] and b [11.5, 14] overlap: b shares rank 1; e [19, 21] does not touch b
    assert [(e["method"], e["rank"], e["tie"]) for e in ranked] == [
        ("a", 1, True), ("b", 1, True), ("e", 3, False), ("c", 4, False), ("d", 5, False)]
    best_first = rank_entries([_e("x", 0.5, 0.4, 0.6), _e("y", 0.9, 0.85, 0.95)], "fid", "max")
    assert [(e["method"], e["rank"], e["tie"]) for e in best_first] == [("y", 1, False),
                                                                         ("x", 2, False)]


def test_method_card_reads_the_generators_description_options_and_readme():
    card = method_card("fairgen")
    assert card["code"].startswith("methods.fairgen") and card["options"]
    assert card["readme"] is not None and "FairGen" in card["readme"]


def test_citation_names_the_benchmark_version():
    import re
    from pathlib import Path

    import benchmark

    text = (Path(__file__).resolve().parent.parent / "CITATION.cff").read_text()
    assert re.search(r"^cff-version: 1\.2\.0$", text, re.M)
    assert re.search(rf"^version: {re.escape(benchmark.__version__)}$", text, re.M)
