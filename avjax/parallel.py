"""Data parallelism with jit + Mesh + NamedSharding: replicated state, batches sharded on 'data'.

Global batches are assembled from per-host data with `jax.make_array_from_process_local_data`;
averages happen on the global batch inside the loss, so no explicit gradient all-reduce is needed
(XLA inserts it) and BatchNorm statistics are global. Multi-host launches call `initialize()`.
"""
import logging
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def initialize_distributed():
    """`jax.distributed.initialize()` when launched as one of several processes.

    Reads JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID (or the cluster's own
    environment, e.g. SLURM / Cloud TPU, which jax detects by itself). A single process does nothing.
    """
    if jax.distributed.is_initialized():
        return
    address = os.environ.get("JAX_COORDINATOR_ADDRESS")
    if address:
        jax.distributed.initialize(coordinator_address=address,
                                   num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
                                   process_id=int(os.environ["JAX_PROCESS_ID"]))
    elif any(k in os.environ for k in ("SLURM_JOB_ID", "TPU_WORKER_HOSTNAMES", "OMPI_COMM_WORLD_SIZE")):
        jax.distributed.initialize()


def make_mesh(devices=None) -> Mesh:
    devices = np.asarray(devices if devices is not None else jax.devices())
    return Mesh(devices.reshape(-1), (DATA_AXIS,))


def replicated(mesh):
    return NamedSharding(mesh, P())


def data_sharded(mesh):
    return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(global_batch: int, mesh: Mesh):
    n = mesh.devices.size
    if global_batch % n or global_batch % jax.process_count():
        raise ValueError(f"global batch {global_batch} must divide evenly over {n} devices and "
                         f"{jax.process_count()} processes")
    return global_batch // jax.process_count()


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
    """Per-host numpy batch -> global jax.Arrays sharded along 'data'."""
    sharding = data_sharded(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in local_batch.items()}


def replicate(tree, mesh: Mesh):
    """Place a pytree on every device (copied first: donation must never free the caller's buffers)."""
    return jax.device_put(jax.tree.map(np.array, tree), replicated(mesh))


def log_topology(mesh: Mesh):
    logging.info("process %d of %d; %d local / %d global devices (%s); mesh %s",
                 jax.process_index(), jax.process_count(), jax.local_device_count(),
                 jax.device_count(), jax.devices()[0].platform, dict(mesh.shape))
