"""Programs from Debian packages that the tests drive (`make install` puts
them there). A missing one fails the test that needs it, loudly: `make
test` installs them, so a skip would only hide a broken set-up."""
from __future__ import annotations

import shutil

import pytest


def program(name: str, package: str) -> str:
    """The path of `name`, or fail naming the Debian package that has it."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        pytest.fail(f"{name} is not installed: it comes with the Debian package {package!r} "
                    f"(`make install` installs it; add it to DEBS in the Makefile if it is new)")
    return path
