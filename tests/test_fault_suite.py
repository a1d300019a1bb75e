"""The fault suite: one 20,000-photo job on a private local stack while pool processes are SIGKILLed, Redis and
PostgreSQL restart, one of its objects goes missing and a storm of other jobs is cancelled; then every item of
every job has exactly one outcome, every job ended, and every callback was delivered once.

The same harness prints its counts as `fashion-batch bench --faults` (pipeline/tools/bench/faults.py).
"""
from __future__ import annotations

import pytest

from pipeline.tools.bench.fault_stack import fault_stack
from pipeline.tools.bench.faults import problems, run, summary

pytestmark = pytest.mark.slow


def test_a_20000_photo_job_under_faults_keeps_every_promise(tmp_path):
    # Given a private stack whose servers this process holds (so they can be restarted mid-job)
    with fault_stack(tmp_path / "stack") as stack:
        # When a 20,000-photo job runs while faults are injected, and a storm of small jobs is cancelled
        report = run(stack, 20_000)
    print("\n" + summary(report))
    # Then every fault was injected while the job ran ...
    faults = report["faults"]
    assert faults["pool SIGKILLs"] >= 2 and faults["redis restarts"] == faults["postgresql restarts"] == 1, faults
    assert faults["missing objects"] == 1 and faults["cancel storm jobs"] >= 4, faults
    # ... and every promise was kept: one outcome per item, every job ended, the missing object failed saying
    # why, each callback delivered once
    assert problems(report) == []
    assert report["storm_jobs"]["cancelled"] >= 1
