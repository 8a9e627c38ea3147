"""Not a benchmark: two stores of one experiment compared bit for bit, to check that a change
preserved behaviour (the same demo before and after a redesign gives the same numbers).

Compares every row of the epochs, models and measures tables (all but wall times, hosts and
devices) and of the measures' long tables, the settings stored with each measure row, and every
tensor of every checkpoint. Prints one line per part and ALL IDENTICAL or SOME DIFFER (exit 1).

    .venv/bin/python bench/compare_stores.py STORAGE_BEFORE STORAGE_AFTER [EXPERIMENT]   # default demo
"""
import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sweep.store import Store  # noqa: E402

experiment = sys.argv[3] if len(sys.argv) > 3 else "demo"
a, b = (Store(root, experiment) for root in sys.argv[1:3])
TIMING = {"seconds", "images_per_second", "finished_at", "started_at", "host", "device"}
ok = True


def same(name, x, y, keys):
    global ok
    cols = [c for c in x.columns if c not in TIMING]
    x = x[cols].sort_values(keys).reset_index(drop=True)
    y = y[cols].sort_values(keys).reset_index(drop=True)
    try:
        pd.testing.assert_frame_equal(x, y, check_exact=True, check_dtype=False)
        print(f"{name}: identical ({len(x)} rows)")
    except AssertionError as exc:
        ok = False
        print(f"{name}: DIFFER: {str(exc)[:400]}")


same("epochs", a.epochs(), b.epochs(), ["trial_id", "epoch"])
same("models", a.models(), b.models(), ["trial_id", "model_id"])
ma, mb = a.measures(), b.measures()
# A family one store has and the other has not (one added since) is named, not compared.
only = sorted(set(ma["family"]) ^ set(mb["family"]))
if only:
    print(f"measure families in one store only (not compared): {', '.join(only)}")
    common = set(ma["family"]) & set(mb["family"])
    ma, mb = ma[ma["family"].isin(common)], mb[mb["family"].isin(common)]
same("measures", ma.drop(columns=["settings"]), mb.drop(columns=["settings"]), ["trial_id", "model_id", "family", "measure"])
same("measure settings", ma[["trial_id", "model_id", "family", "measure", "settings"]],
     mb[["trial_id", "model_id", "family", "measure", "settings"]], ["trial_id", "model_id", "family", "measure"])
for table in ("el2n", "pruning_curves", "hessian_eigenvalues"):
    if Path(a.path(table)).exists() and Path(b.path(table)).exists():
        same(table, a.read_folder(table), b.read_folder(table), [c for c in a.read_folder(table).columns[:4]])
files = 0
for path in sorted(Path(a.path("checkpoints")).rglob("*.pt")):
    other = Path(b.path("checkpoints")) / path.relative_to(a.path("checkpoints"))
    sa = torch.load(path, weights_only=True)
    sb = torch.load(other, weights_only=True)
    if sa.keys() != sb.keys() or any(not torch.equal(sa[k], sb[k]) if torch.is_tensor(sa[k]) else sa[k] != sb[k] for k in sa):
        ok = False
        print(f"checkpoint {path.relative_to(a.path('checkpoints'))}: DIFFER")
    files += 1
print(f"checkpoints: {files} compared")
print("ALL IDENTICAL" if ok else "SOME DIFFER")
sys.exit(0 if ok else 1)
