"""Processes a test starts to signal as a terminal would (Ctrl-C to the group), and
always ends: the child and its whole process group are killed when the test leaves,
however it ended. And where processes listen: the addresses of their TCP servers,
read from /proc (Linux), as `ss -ltnp` shows them."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _default_sigint() -> None:
    # A background job's children start with SIGINT ignored (POSIX, job control
    # off), and a Python started so installs no KeyboardInterrupt handler: the
    # child gets SIGINT as a terminal's command would, whoever runs the suite.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def started(command: list[str], **popen) -> Iterator[subprocess.Popen]:
    """subprocess.Popen(command, **popen) in a session (process group) of its own,
    with SIGINT at its default; on leaving, the group is killed and the child
    reaped, so a failed test leaves nothing running."""
    process = subprocess.Popen(command, preexec_fn=_default_sigint,
                               start_new_session=True, **popen)  # fmt: skip
    try:
        yield process
    finally:
        kill_group(process)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL to the process group `process` leads (its leader may be gone, the
    rest of the group not), then its pipes closed and the child reaped."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with process:  # closes the pipes, waits
        pass


def with_descendants(pids: Iterable[int]) -> set[int]:
    """`pids` and every live process below them (a raylet's workers, say)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # ended meanwhile
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, added = set(pids), True
    while added:
        below = {pid for pid, parent in parents.items() if parent in found}
        added = bool(below - found)
        found |= below
    return found


def listening(pids: Iterable[int]) -> set[IPAddress]:
    """The addresses the TCP servers of processes `pids` listen on (an IPv6 socket's
    IPv4-mapped address as its IPv4 one; :: as 0.0.0.0, any interface)."""
    sockets = set()
    for pid in pids:
        with contextlib.suppress(OSError):  # ended meanwhile
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        sockets.add(target[len("socket:[") : -1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            # local address, state (0A: LISTEN), socket inode
            if fields[3] == "0A" and fields[9] in sockets:
                found.add(_address(fields[1].split(":")[0]))
    return found


def _address(hexadecimal: str) -> IPAddress:
    # /proc/net/tcp* write an address as 32-bit words, each in host (little-endian)
    # byte order
    words = [bytes.fromhex(hexadecimal[i : i + 8])[::-1]
             for i in range(0, len(hexadecimal), 8)]  # fmt: skip
    address = ipaddress.ip_address(b"".join(words))
    if isinstance(address, ipaddress.IPv6Address):
        if address.is_unspecified:
            return ipaddress.IPv4Address("0.0.0.0")
        return address.ipv4_mapped or address
    return address
