"""detectron2's ``launch``, also on machines without CUDA.

detectron2 v0.6's workers assert CUDA and use NCCL. Where CUDA is available this module hands
over to detectron2's ``launch`` unchanged; without it, it starts the same processes itself, one
per "GPU" of ``--num-gpus``, on the CPU with the gloo backend, sets up detectron2's per-machine
process group (``comm.get_local_rank()`` and friends) and then calls ``main_func`` as
detectron2's workers do. The command line stays detectron2's: ``--num-gpus``,
``--num-machines``, ``--machine-rank``, ``--dist-url`` (``auto`` picks a free local port).
:func:`check_device` tells, before anything starts, whether ``MODEL.DEVICE`` can run that many
processes here.
"""
import logging
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import launch as detectron2_launch
from detectron2.engine.launch import DEFAULT_TIMEOUT
from detectron2.utils import comm

from ..specs import STAConfigError

__all__ = ["launch", "check_device"]


def check_device(device: str, num_gpus_per_machine: int = 1) -> None:
    """Raise STAConfigError, with its fix, when ``MODEL.DEVICE`` = ``device`` cannot run
    ``num_gpus_per_machine`` processes on this machine: a CUDA device without CUDA (each process
    would die building its model, after the launch), or more GPUs than the machine has."""
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError) as e:
        raise STAConfigError(f"cfg.MODEL.DEVICE = {device!r} is not a torch device ({e}); use 'cpu' or "
                             "'cuda'") from e
    if kind != "cuda":
        return
    if not torch.cuda.is_available():
        cores = os.cpu_count() or 1
        n = num_gpus_per_machine
        asked = f" (--num-gpus {n} asks for {n} GPUs)" if n > 1 else ""
        raise STAConfigError(
            f"cfg.MODEL.DEVICE = {device!r} but this machine has no CUDA{asked}: add `MODEL.DEVICE cpu` "
            "to the command to train on the CPU. Without CUDA, --num-gpus N starts N CPU processes "
            f"joined with gloo, which share this machine's {cores} CPU core(s): --num-gpus 1 (one "
            f"process uses every core) or at most --num-gpus {cores}"
        )
    count = torch.cuda.device_count()
    if num_gpus_per_machine > count:
        raise STAConfigError(f"--num-gpus {num_gpus_per_machine} but this machine has {count} CUDA "
                             f"device(s): use --num-gpus {count} or fewer")


def launch(main_func, num_gpus_per_machine, num_machines=1, machine_rank=0, dist_url=None, args=(),
           timeout=DEFAULT_TIMEOUT):
    """Run ``main_func(*args)`` in ``num_gpus_per_machine`` processes on each of ``num_machines``
    machines (detectron2's signature); processes, not GPUs, when CUDA is unavailable."""
    world_size = num_machines * num_gpus_per_machine
    if world_size == 1 or torch.cuda.is_available():
        return detectron2_launch(main_func, num_gpus_per_machine, num_machines, machine_rank, dist_url,
                                 args, timeout)
    if dist_url is None:
        raise ValueError("--dist-url is required for a multi-process launch (or 'auto' on one machine)")
    if dist_url == "auto":
        if num_machines != 1:
            raise ValueError("--dist-url auto only works on one machine; give tcp://<host>:<port>")
        dist_url = f"tcp://127.0.0.1:{_free_port()}"
    mp.spawn(_cpu_worker, nprocs=num_gpus_per_machine, daemon=False,
             args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args, timeout))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cpu_worker(local_rank, main_func, world_size, per_machine, machine_rank, dist_url, args, timeout):
    rank = machine_rank * per_machine + local_rank
    try:
        dist.init_process_group("gloo", init_method=dist_url, world_size=world_size, rank=rank, timeout=timeout)
    except Exception:
        logging.getLogger(__name__).error(f"could not join the process group at {dist_url}")
        raise
    # detectron2's comm reads the machine's ranks from this group; every process creates every group.
    for machine in range(world_size // per_machine):
        group = dist.new_group(list(range(machine * per_machine, (machine + 1) * per_machine)))
        if machine == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
    comm.synchronize()
    main_func(*args)
