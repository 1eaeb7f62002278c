"""Several processes, one price: who counts a machine's energy under ``accelerate launch`` / ``torchrun``.

The rule: each machine (node) is priced once, by its local main process (``LOCAL_RANK`` 0).

- Whole-machine meters (RAPL packages and DRAM, NVML whole GPUs) are read by that process only; the other
  processes of the node read the same counters, so counting them too would multiply the machine's energy
  by the number of processes.
- The per-process estimates (the CPU's TDP x CPU seconds, RAM per GB resident) are taken by that same process
  over the launcher's process tree (the ``accelerate`` / ``torchrun`` process and every worker it started on
  the node), so every local process's CPU seconds and memory are in it once. When the launcher cannot be
  recognised (its children are not the node's workers), the estimate covers the local main process only and
  the record says so.
- The other local processes still measure when asked (a ``PriceTag`` works anywhere) but do not append to the
  ledger; the record's ``distributed`` field says which process counted.

Launch facts come from the environment variables torchrun (and so ``accelerate launch``) sets: ``WORLD_SIZE``,
``RANK``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``GROUP_RANK`` (the node's index; ``NODE_RANK`` or
``MACHINE_RANK`` where another launcher sets those).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

COUNTED_BY = "local main process of each node (LOCAL_RANK 0)"


def _int(environ: Mapping[str, str], *names: str) -> int | None:
    for name in names:
        value = environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return None


@dataclass(frozen=True)
class Launch:
    """Where this process sits in a launched group (a process on its own: world size 1)."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    local_world_size: int = 1
    node_rank: int = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Launch":
        environ = os.environ if environ is None else environ
        world = _int(environ, "WORLD_SIZE")
        if world is None or world <= 1:
            return cls()
        rank = _int(environ, "RANK") or 0
        local_rank = _int(environ, "LOCAL_RANK")
        local_world = _int(environ, "LOCAL_WORLD_SIZE")
        if local_rank is None:  # a launcher that sets no local rank: one process per node is all we can assume
            local_rank, local_world = 0, local_world or 1
        local_world = max(local_world or world, local_rank + 1)
        node = _int(environ, "GROUP_RANK", "NODE_RANK", "MACHINE_RANK")
        if node is None:
            node = rank // local_world
        return cls(world, min(rank, world - 1), local_rank, min(local_world, world), node)

    @property
    def launched(self) -> bool:
        return self.world_size > 1

    @property
    def counts_machine(self) -> bool:
        """Whether this process prices its machine (the node's local main process, or a process on its own)."""
        return self.local_rank == 0

    @property
    def nodes(self) -> int:
        return max(1, -(-self.world_size // self.local_world_size))

    def describe(self, estimate_scope: str | None = None) -> dict:
        """The record's ``distributed`` field."""
        out = {
            "world_size": self.world_size,
            "rank": self.rank,
            "local_rank": self.local_rank,
            "node_rank": self.node_rank,
            "local_processes": self.local_world_size,
            "nodes": self.nodes,
            "counted_by": COUNTED_BY,
            "counted": self.counts_machine,
        }
        if self.counts_machine:
            out["scope"] = (
                "this node: whole-machine meters (RAPL, NVML) read once here; "
                + (estimate_scope or "per-process estimates over this process"))
            if self.nodes > 1:
                out["other_nodes"] = (f"{self.nodes - 1} other node(s) are priced by their own local main process,"
                                      " each appending its own record to its ledger")
        else:
            out["scope"] = (f"not counted: LOCAL_RANK {self.local_rank}; the node's local main process prices this"
                            " machine (this record is not appended to the ledger)")
        return out


def launcher_tree(launch: Launch, *, parent_pid: int | None = None):
    """The process tree the node's estimates cover, and a sentence saying what it is.

    On the local main process of a node with several local processes: the launcher's tree (the parent
    process, when its children carry ``LOCAL_RANK`` 0 to ``LOCAL_WORLD_SIZE``-1), else this process alone.
    """
    from greenlm.measure.energy import ProcessTree

    if not launch.launched or launch.local_world_size <= 1:
        return ProcessTree(), "per-process estimates over this process (the node's only one)"
    parent = os.getppid() if parent_pid is None else parent_pid
    ranks = _children_local_ranks(parent)
    wanted = set(range(launch.local_world_size))
    if parent > 1 and wanted <= ranks:
        return (ProcessTree(parent),
                f"CPU and RAM estimates over the launcher's process tree (pid {parent}: its"
                f" {launch.local_world_size} local processes)")
    return (ProcessTree(),
            f"CPU and RAM estimates over this process only: the launcher (pid {parent}) was not recognised, so"
            f" the other {launch.local_world_size - 1} local process(es) are not in the estimates")


def _children_local_ranks(pid: int) -> set[int]:
    """LOCAL_RANK of each child of ``pid`` (read from its environment), where readable."""
    import psutil

    ranks = set()
    try:
        children = psutil.Process(pid).children()
    except psutil.Error:
        return ranks
    for child in children:
        try:
            value = child.environ().get("LOCAL_RANK", "")
        except psutil.Error:
            continue
        if value.isdigit():
            ranks.add(int(value))
    return ranks
