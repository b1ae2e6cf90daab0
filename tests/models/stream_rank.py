"""One torchrun rank of the streamed logreg fit (run by tests/models/test_streaming.py):
``python -m torch.distributed.run --nproc-per-node N -m tests.models.stream_rank FILE OUT.npz``.

Each rank streams its contiguous share of the train rows; rank 0 saves coef_, intercept_ and the
scaler's mean/scale to OUT.npz, every rank saves its coef_ to OUT.rank<R>.npy."""

from __future__ import annotations

import sys

import numpy as np
import torch.distributed as dist

from linprobe.models.blocks import H5Blocks
from linprobe.models.streaming import fit_streamed


def main(path: str, out: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        model = fit_streamed(H5Blocks(path, 29, ("train",), rank=rank, world=world), C=0.1, tol=1e-6,
                             device="cpu")
        clf, norm = model.named_steps["probe"], model.named_steps["normalize"]
        np.save(f"{out}.rank{rank}.npy", clf.coef_)
        if rank == 0:
            np.savez(out, coef=clf.coef_, intercept=clf.intercept_, mean=norm.mean_,
                     scale=norm.scale_, n_iter=clf.n_iter_)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:3])
