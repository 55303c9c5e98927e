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
    """Per-host numpy batch -> global jax.Arrays sharded along 'data'.

    An `image` of uint8 pixels (the decoded format's training examples: a quarter of the bytes to batch and
    copy on the host) becomes float32 in [0, 1] on the devices, equal to the host's `pixels / 255`."""
    sharding = data_sharded(mesh)
    out = {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local_batch.items()}
    if "image" in out and out["image"].dtype == np.uint8:
        out["image"] = unit_pixels(out["image"])
    return out


# uint8 -> float32 as `avjax.data.preprocess.unit_pixels` computes it on the host (float32 division by 255)
UNIT_PIXELS = np.arange(256, dtype=np.float32) / np.float32(255.0)


@jax.jit
def unit_pixels(image):
    """uint8 pixels -> float32 in [0, 1] on device, by table: XLA compiles x / 255 as x * (1 / 255), which is
    one ulp off the host's division for 126 of the 256 values."""
    return jax.numpy.asarray(UNIT_PIXELS)[image.astype(np.int32)]


def replicate(tree, mesh: Mesh):
    """Place a pytree on every device (copied first: donation must never free the caller's buffers)."""
    return jax.device_put(jax.tree.map(np.array, tree), replicated(mesh))


def log_topology(mesh: Mesh):
    logging.info("process %d of %d; %d local / %d global devices (%s); mesh %s",
                 jax.process_index(), jax.process_count(), jax.local_device_count(),
                 jax.device_count(), jax.devices()[0].platform, dict(mesh.shape))
