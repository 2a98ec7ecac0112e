"""``experiments/synthetic_seed_study.py``: job graph (stage 2 after its own stage 1, evaluations after their
training, tiers) and the mean ± std tables read back from the evaluator's metrics.json."""

import json

import pytest

from experiments.synthetic_seed_study import HOLDOUT, VAL, VARIANTS, _mean_std, build_jobs, eval_name, tables


def test_jobs_depend_on_their_own_seed_and_run_in_tiers():
    jobs = {
        j.name: j for j in build_jobs(["vis_rgnn"], [1, 2], ["--dataset", "h=x.json:imgs"], ["SOLVER.MAX_ITER", "2"])
    }
    s2 = jobs["rgnn_s2_seed2"]
    assert s2.deps == ("rgnn_s1_seed2",)
    assert s2.args[s2.args.index("MODEL.WEIGHTS") + 1] == "{out}/rgnn_s1_seed2/model_final.pth"
    assert s2.args[s2.args.index("SEED") + 1] == "2" and "SOLVER.MAX_ITER" in s2.args
    assert not any(n.startswith("stg_") for n in jobs)
    # the full models of every seed train before the ablations with their own weights
    assert jobs["rgnn_s2_seed2"].priority < jobs["rgnn_s2_noapp_seed1"].priority
    evals = [j for j in jobs.values() if j.name.startswith("eval_")]
    assert all(len(j.deps) == 1 and j.deps[0] in jobs for j in evals)
    assert all(j.priority < jobs["rgnn_s1_seed1"].priority for j in evals)  # evaluations first when ready
    holdout = [j for j in evals if j.name.endswith("_holdout")]
    assert holdout and all("--dataset" in j.args and f"('{HOLDOUT}',)" in j.args for j in holdout)
    assert len({j.name for j in evals}) == len(evals)


def test_tables_report_mean_and_sample_std_over_finished_seeds(tmp_path):
    full = next(v for v in VARIANTS if v.train == "rgnn_s2" and not v.opts)
    for seed, ap in [(1, 10.0), (2, 14.0)]:
        d = tmp_path / eval_name(full, seed, VAL) / "inference" / VAL
        d.mkdir(parents=True)
        metrics = {"AP": ap, "AP50": 2 * ap, "AP75": ap / 2, "AR10": ap + 1}
        (d / "metrics.json").write_text(json.dumps({"dataset": VAL, "segm": metrics}))
    text = tables(["vis_rgnn"], [1, 2, 3], tmp_path)
    row = next(line for line in text.splitlines() if line.startswith(f"| {full.row} |"))
    assert "| 2 | 12.0 ± 2.8 | 24.0 ± 5.7 |" in row and row.endswith("| – | 10.0 / 14.0 |")
    assert _mean_std([]) == "–" and _mean_std([3.0]) == "3.0"


def test_trainings_restricts_the_study_and_pulls_in_the_stage1_it_starts_from():
    jobs = {j.name: j for j in build_jobs(["vis_stg", "vis_rgnn"], [2], [], trainings=["rgnn_s2_noapp", "stg_iter1"])}
    trained = {n for n in jobs if not n.startswith("eval_")}
    assert trained == {"rgnn_s1_seed2", "rgnn_s2_noapp_seed2", "stg_iter1_seed2"}
    evals = [j for j in jobs.values() if j.name.startswith("eval_")]
    assert evals and {j.deps[0] for j in evals} == trained
    with pytest.raises(ValueError, match="nope"):
        build_jobs(["vis_stg"], [1], [], trainings=["nope"])
