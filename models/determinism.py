"""Reproducible runs: the configured thread count and deterministic kernels, then the seeds."""
from __future__ import annotations

import os
import platform
import random

import numpy as np
import torch

from models.config import RuntimeConfig


def thread_count(runtime: RuntimeConfig) -> int:
    """torch's CPU threads for this process. OMP_NUM_THREADS, when set, wins over `runtime.threads`: whoever
    starts the process (a test runner giving each worker one core, a batch scheduler, the Dask runner) knows
    how many cores it shares; more threads than cores would only slow every process down."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return runtime.threads or torch.get_num_threads()


def machine(runtime: RuntimeConfig) -> str:
    """Besides the inputs, what decides a step's last bits: torch's version, the device and the thread count."""
    device = f"cuda {torch.cuda.get_device_name()}" if torch.cuda.is_available() else f"cpu {platform.machine()}"
    kernels = "deterministic" if runtime.deterministic else "fastest"
    return f"torch {torch.__version__}, {device}, {thread_count(runtime)} threads, {kernels} kernels"


def pin_runtime(runtime: RuntimeConfig) -> None:
    """Apply the machine settings, process-wide. Inter-op threads are left alone: they only run TorchScript
    forks, which nothing here uses, and torch lets a process set them once, before any parallel work."""
    threads = thread_count(runtime)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if runtime.deterministic:  # cuBLAS picks its workspaces nondeterministically unless set before its first call
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(runtime.deterministic, warn_only=True)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def pin(seed: int, runtime: RuntimeConfig | None = None) -> torch.Generator:
    """Where training starts: the runtime when given (else the process keeps the one its flow pinned), then
    every random stream seeded; returns a generator for data order."""
    if runtime is not None:
        pin_runtime(runtime)
    return seed_everything(seed)
