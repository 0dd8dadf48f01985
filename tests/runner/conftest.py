"""The local Slurm cluster for the Slurm executor's tests: started once per session, only when a test asks."""

from __future__ import annotations

import os

import pytest
from helpers.slurm import SlurmUnavailable, start_cluster


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A running one-node Slurm (munged, slurmctld, slurmd on this machine); SLURM_CONF points at it
    for this process and the runners it starts. Skips when the daemons cannot run here."""
    try:
        cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    except SlurmUnavailable as error:
        pytest.skip(f"no local Slurm: {error}")
    previous = os.environ.get("SLURM_CONF")
    os.environ.update(cluster.env)
    yield cluster
    cluster.stop()
    if previous is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = previous
