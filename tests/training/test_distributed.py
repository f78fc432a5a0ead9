"""Data-parallel training: two gloo ranks on CPU under torchrun end with identical weights; batch splitting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from autounet.cli.main import main
from autounet.errors import ConfigError
from autounet.training.distributed import DistributedContext, distributed_session, split_batch, weights_digest
from tests.conftest import write_tiny_dataset

TRAIN = ["train", "-d", "999", "-c", "3d_fullres", "-f", "0", "--epochs", "2", "--iterations-per-epoch", "2",
         "--validation-iterations", "1", "--num-workers", "1", "--no-validation", "-q"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    write_tiny_dataset(root / "raw", num_cases=5, num_channels=1, shape=(8, 20, 20))
    assert main(["plan-and-preprocess", "-d", "999", "-np", "1", "--data-root", str(root), "-q"]) == 0
    return root


def test_two_gloo_ranks_hold_identical_weights(data_root: Path, tmp_path: Path) -> None:
    # Only the variables torchrun sets must differ: an inherited RANK/WORLD_SIZE would confuse it.
    env = {key: value for key, value in os.environ.items()
           if key not in {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "autounet", *TRAIN, "--data-root", str(data_root)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.count("trained:") == 1  # only rank 0 reports
    fold = data_root / "results" / "Dataset999_Tiny" / "3d_fullres" / "fold_0"
    for name in ("checkpoint_final.pt", "checkpoint_latest.pt", "metrics.json", "training.log"):
        assert (fold / name).is_file(), name
    # Every rank digests its final weights and the run fails unless all agree; rank 0 logs the digest, which
    # must be that of the checkpoint it wrote.
    final = torch.load(fold / "checkpoint_final.pt", weights_only=True)["network"]
    digest_line = next(line for line in (fold / "training.log").read_text().splitlines()
                       if "weights identical on all 2 ranks" in line)
    assert weights_digest(final)[:16] in digest_line
    assert not any(fold.glob(".*.tmp")), "no rank may leave partial checkpoint files"


def test_split_batch_follows_nnunet() -> None:
    def context(rank: int, world: int) -> DistributedContext:
        return DistributedContext(rank=rank, world_size=world)

    assert split_batch(2, 0.33, context(0, 1)) == (2, 0.33)  # single process: unchanged
    shares = [split_batch(5, 0.4, context(rank, 2)) for rank in range(2)]
    assert [size for size, _ in shares] == [3, 2]
    # 40 % of 5 patches = 2 forced: the last 2 of the global batch, all on rank 1.
    assert shares == [(3, 0.0), (2, 1.0)]
    size, fraction = split_batch(2, 0.33, context(1, 2))
    assert size == 1 and 0.0 < fraction <= 1.0
    with pytest.raises(ConfigError, match="smaller than"):
        split_batch(1, 0.33, context(0, 2))


def test_rank_seeds_differ_but_rank_zero_keeps_the_seed() -> None:
    seeds = [DistributedContext(rank=rank, world_size=4).rank_seed(12345) for rank in range(4)]
    assert seeds[0] == 12345 and len(set(seeds)) == 4
    assert DistributedContext().rank_seed(12345) == 12345


def test_without_torchrun_nothing_is_initialised() -> None:
    with distributed_session("cpu", environ={}) as context:
        assert not context.is_distributed and context.is_main
        assert context.mean(2.5) == 2.5 and context.sum([1.0, 2.0]) == [1.0, 2.0]
        assert not torch.distributed.is_initialized()
    with pytest.raises(ConfigError, match="MASTER_ADDR"), distributed_session("cpu", environ={"WORLD_SIZE": "2"}):
        pass
