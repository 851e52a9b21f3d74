"""numba checks only the source file of the function it caches: a kernel
inlining a helper or constant from another module would be loaded stale
after that module changed. `drop_stale_cache` drops the whole cache when
any module with kernels, or one they import, changed."""
from __future__ import annotations

from ocs import kernels


def test_the_modules_kernels_import_are_watched():
    names = {p.relative_to(p.parents[1]).as_posix() for p in kernels.kernel_sources()}
    # fastccr.py's decoder inlines fastwalk.py's readers; the engine's kernels read the codes and tables
    assert {"diameter/fastccr.py", "diameter/fastwalk.py", "ocs/codes.py", "engine/tables.py",
            "engine/kernel.py", "engine/grant.py"} <= names


def test_a_changed_source_drops_the_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    (cache / "diameter" / "__pycache__").mkdir(parents=True)
    index = cache / "diameter" / "__pycache__" / "fastccr.decode-10.py311.nbi"
    data = cache / "diameter" / "__pycache__" / "fastccr.decode-10.py311.1.nbc"
    other = cache / "diameter" / "__pycache__" / "fastccr.cpython-311.pyc"
    for f in (index, data, other):
        f.write_bytes(b"x")
    monkeypatch.setattr(kernels, "cache_dir", lambda: str(cache))
    assert kernels.drop_stale_cache()               # no stamp yet: whatever is there may be stale
    assert not index.exists() and not data.exists() and other.exists()
    index.write_bytes(b"x")                          # filled again by the compile
    assert not kernels.drop_stale_cache()           # the same sources: kept
    assert index.exists()
    stamp = cache / "ocs-kernel-sources.sha256"
    stamp.write_text("0" * 64 + "\n")               # sources changed since it was filled
    assert kernels.drop_stale_cache()
    assert not index.exists()
