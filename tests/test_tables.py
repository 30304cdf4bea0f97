"""The committed tables: the top-300 statistic chooses its voxels by validation r (never test r),
each statistic stands beside its no-information floor, comparisons say how they chose."""

from __future__ import annotations

import json

import numpy as np
import pytest

from etecrm_lib import referee, tables
from etecrm_lib.evaluation import EncodingResult
from etecrm_lib.results import MODEL_KEY_FIELDS, group_by_model, model_key

N_TEST, N_VOX = 120, 400
# voxels 0-99: high test r but low validation r; voxels 100-399 the other way round. Top 300 by
# test r = the 100 "lucky" voxels + 200 others; top 300 by validation r = the 300 others.
LUCKY = slice(0, 100)


def hand_made(model, seed, others_r, lucky_r=0.9, val=True, **info):
    test_r = np.full(N_VOX, others_r, np.float32)
    test_r[LUCKY] = lucky_r
    val_r = np.full(N_VOX, 0.5, np.float32)
    val_r[LUCKY] = 0.01  # (exactly 0 would mark a collapsed model: evaluation)
    info = {"seed": seed, "profile": "quick", "data_seed": None, "n_test_images": N_TEST} | info
    if val:
        info["val_r"] = val_r
    return EncodingResult(model, "V1", "sim", 1, test_r, info=info)


@pytest.fixture
def results():
    return [
        hand_made("a", 0, others_r=0.1),
        hand_made("a", 1, others_r=0.2),
        hand_made("old", 0, others_r=0.1, val=False),  # a result stored without val_r
    ]


def test_top_300_is_chosen_by_validation_r_not_by_test_r(results):
    by_test = (100 * 0.9 + 200 * 0.1) / 300  # what the tables reported before (test selection)
    assert results[0].summary()[tables.TEST_TOP] == pytest.approx(by_test)
    assert tables.top_n_validation(results[0]) == (pytest.approx(0.1), tables.BY_VALIDATION)
    rows = {(r["model"], r["seed"]): r for r in tables.table_rows(results)}
    assert rows[("a", 0)][tables.TOP] == pytest.approx(0.1)
    assert rows[("a", 1)][tables.TOP] == pytest.approx(0.2)
    assert tables.TEST_TOP not in rows[("a", 0)]  # the test-selected statistic is not in the table
    # without val_r: no number (JSON null), and the row says why; never the test-selected value
    assert rows[("old", 0)][tables.TOP] is None
    assert rows[("old", 0)]["top_selection"] == tables.NO_VALIDATION


def test_seed_rows_average_over_seeds_and_ensembles_use_their_seeds_validation_r(results):
    ensemble = hand_made("a", None, others_r=0.15, val=False, seeds=[0, 1], ensemble=True)
    ensemble.test_r[100:200] = 0.0  # the selection must follow the seeds' mean validation r:
    results[1].info["val_r"][100:200] = -0.4  # mean over seeds 0.05 < 0.5: voxels 100-199 drop
    rows = {(r["model"], r["kind"]): r for r in tables.seed_rows(results, [ensemble])}
    seeds = rows[("a", "seeds")]
    # seed 1's top 300 by val r: 200-399 (0.5) and 100 of the lucky voxels (val 0.01 > -0.4)
    seed1 = (200 * 0.2 + 100 * 0.9) / 300
    assert seeds[tables.TOP] == pytest.approx((0.1 + seed1) / 2)
    assert seeds[f"{tables.TOP}_sd"] == pytest.approx(np.std([0.1, seed1], ddof=1))
    assert seeds["median_r"] == pytest.approx(0.15)  # other columns as before
    ens = rows[("a", "ensemble")]
    # mean val r: voxels 200-399 0.5, 0-99 0.01, 100-199 0.05 -> top 300 = 200-399 and 100-199
    assert ens[tables.TOP] == pytest.approx((200 * 0.15 + 100 * 0.0) / 300)
    assert ens["top_selection"] == tables.BY_SEEDS_VALIDATION
    assert rows[("old", "seeds")][tables.TOP] is None


def test_floors_stand_beside_median_and_top_300_and_depend_only_on_the_sizes(results):
    rows = tables.seed_rows(results)
    want_median = referee.floor_from_sizes(N_TEST, N_VOX, "median_r")["p95"]
    want_top = referee.floor_from_sizes(N_TEST, N_VOX, "top_n_mean_r", 300, "validation")["p95"]
    for row in rows:
        assert row["median_r_floor"] == pytest.approx(want_median)
        assert row[f"{tables.TOP}_floor"] == pytest.approx(want_top)
    # null r has s.d. 1/sqrt(N - 1): a random 300 of them average to s.d. ~ 0.0053, p95 ~ 0.0087
    assert 0.006 < want_top < 0.012 and 0.004 < want_median < 0.010
    no_size = hand_made("a", 0, 0.1, n_test_images=None)
    assert tables.table_rows([no_size])[0]["median_r_floor"] is None  # unknown N_test: no floor
    table = tables.seed_table(rows)
    assert list(table.columns)[2:] == list(tables.TABLE_COLUMNS)
    assert table.loc[(1, "V1", "old"), tables.TOP] == "n/a (no validation r stored)"


def test_written_tables_say_how_the_voxels_were_chosen(results, tmp_path):
    paths = tables.write_tables(results, [], tmp_path)
    md = paths["md"].read_text()
    assert md.startswith(tables.HOW_TO_READ) and "highest **validation r**" in md
    assert tables.COLUMN_LABELS[tables.TOP] in md and "floor (p95, no information)" in md
    assert "| V1 | old | 0 | 400 | 0.100 |" in md and "n/a (no validation r stored)" in md
    per_seed = json.loads(paths["per_seed_json"].read_text())
    assert [r[tables.TOP] for r in per_seed] == pytest.approx([0.1, 0.2, None], nan_ok=True)


def test_comparison_table_shows_how_the_top_n_voxels_were_chosen():
    base = {
        "subject": 1,
        "roi": "V1",
        "kind": "baseline",
        "model_a": "etecrm",
        "model_b": "gwp_ridge",
        "difference": 0.02,
        "ci_low": 0.01,
        "ci_high": 0.03,
        "p_a_not_better": 0.001,
        "n_bootstrap": 1000,
    }
    records = [
        base | {"statistic": "median_r"},
        base | {"statistic": "top_n_mean_r", "top_n_selection": "validation r, shared"},
        base | {"statistic": "top_n_mean_r"},  # written before the field existed: test r
    ]
    table = tables.comparison_table(records)
    assert table["top_n_selection"].tolist()[1:] == ["validation r, shared", "test r"]
    assert table["top_n_selection"].isna().tolist()[0]
    assert (
        list(table.columns).index("top_n_selection") == list(table.columns).index("statistic") + 1
    )


def test_model_key_is_the_grouping_and_the_rows_key(results):
    groups = group_by_model(results)
    assert list(groups) == [model_key(results[0]), model_key(results[2])]
    assert model_key(results[0]) == ("sim", None, "quick", 1, "V1", "a")
    row = tables.seed_rows(results)[0]
    assert tuple(row[k] for k in MODEL_KEY_FIELDS) == model_key(results[0])
