"""Tests of trainers/allocator.py: glibc keeps a pass's freed buffers for the next pass.

Each case runs in a fresh interpreter, since the thresholds are per process and glibc's
dynamic threshold depends on what the process freed before. glibc's own accounting
(``mallinfo2``: bytes in fresh mappings, bytes of heap) says where a 16 MiB tensor, the size of
a pass's activation on the CPU, was served from and whether its memory stayed after ``del``.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from trainers import allocator

ROOT = Path(__file__).resolve().parents[2]

needs_glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc"
    or not hasattr(ctypes.CDLL(None), "mallinfo2"),
    reason="glibc >= 2.33 (mallinfo2) on Linux only")

PROBE = """
import ctypes, json, sys
import torch
from trainers.allocator import M_MMAP_THRESHOLD, keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "kept":
    applied = keep_freed_memory()
else:  # glibc's threshold as a process starts, held there
    applied = bool(libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)) and False
before = libc.mallinfo2()
tensor = torch.empty(4 * 2**20, dtype=torch.float32)  # 16 MiB
tensor.fill_(1.0)
during = libc.mallinfo2()
del tensor
after = libc.mallinfo2()
print(json.dumps({"applied": applied, "mapped": during.hblkhd - before.hblkhd,
                  "heap_grew": during.arena - before.arena, "heap_kept": after.arena - before.arena,
                  "heap_free": before.fordblks}))
"""

MIB = 2**20


def _probe(mode: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in allocator.ENVIRONMENT_VARIABLES}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_glibc
def test_a_large_buffer_comes_from_the_heap_and_stays_there_after_it_is_freed():
    kept = _probe("kept")
    assert kept["applied"] is True
    assert kept["mapped"] == 0  # no fresh mapping for the 16 MiB buffer...
    # ...the heap served it (growing, and from the chunks it already had free: how much that is
    # depends on what the interpreter freed before, e.g. on the size of the environment)...
    assert kept["heap_grew"] + kept["heap_free"] >= 16 * MIB
    assert kept["heap_kept"] + kept["heap_free"] >= 16 * MIB  # ...and keeps the memory for the next pass


@needs_glibc
def test_the_probe_tells_the_two_apart():
    # With glibc's starting threshold held, the same buffer is a mapping of its own, handed
    # back to the operating system by ``del``: the state the module exists to avoid.
    mapped = _probe("mapped")
    assert mapped["applied"] is False
    assert mapped["mapped"] >= 16 * MIB
    assert mapped["heap_kept"] < 16 * MIB


def test_the_users_own_malloc_settings_win():
    for name in allocator.ENVIRONMENT_VARIABLES:
        assert allocator.keep_freed_memory({name: "131072"}) is False


def test_nothing_is_changed_off_glibc(monkeypatch):
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("musl", "1.2"))
    assert allocator.keep_freed_memory({}) is False
