"""Rules versions over the API: validate, upload (kept, not in force),
list, activate, roll back (docs/running.md#rules-through-the-api).

An activation installs the version on the charging loop exactly as a
reload does (journaled, rows carried over, refused if a plan in use or a
pack held is missing) and then writes its files into the rules directory,
which stays the one source of truth: the directory watch, a SIGHUP and the
next start all find the activated version there.
"""
from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import msgspec
import trio
from msgspec import Meta

from ..rules import activation
from ..rules.compile import RuleError, RuleSet, load_rules
from ..rules.versions import keep, kept_versions, load_kept, version_dir
from .route import Answer, ErrorBody, HttpError, Param, Request, Route

log = logging.getLogger("ocs.api")
TAG = "rules"
FileName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.toml$", max_length=128)]
_VERSION = re.compile(r"^[0-9a-f]{12}$")
ACTIVATION_TIMEOUT = 60.0       # seconds


class Struct(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class RuleFiles(Struct):
    """A complete rules version: every file of the directory, by name."""
    files: Annotated[dict[FileName, str], Meta(min_length=1, max_length=256,
                                                description="file name (*.toml) -> its text")]


class Validated(Struct):
    version: str                    # the digest of the files: the same files are always the same version
    active: bool                    # it is the version in force
    kept: bool                      # it is kept in DATA/rules/VERSION (uploaded or installed before)
    plans: int
    packs: int
    sponsors: int
    subscribers: int                # listed one by one
    ranges: int
    range_subscribers: int


class ActiveRules(Struct):
    version: str
    directory: str                  # the rules directory the server watches
    installed_at: str | None        # when, if the installation history knows


class RuleVersion(Struct):
    version: str
    active: bool
    kept_at: str                    # when it was first kept (uploaded or installed)
    installed_at: str | None        # when it was last installed
    files: list[str]


class RuleVersions(Struct):
    active: str
    previous: str | None            # what POST /v1/rules/rollback goes back to
    versions: list[RuleVersion]     # oldest first


class RuleVersionFiles(Struct):
    version: str
    active: bool
    files: dict[str, str]


class Activated(Struct):
    version: str                    # in force now
    was: str                        # in force before
    directory: str                  # its files are written here


# ------------------------------------------------------------ helpers
def _compile(files: dict[str, str]) -> RuleSet:
    # named by their bare file names, so errors read "plans.toml: $.plan[0]..."
    return load_rules(Path("."), {name: text.encode() for name, text in files.items()})


async def _checked(body: RuleFiles) -> RuleSet:
    try:
        return await trio.to_thread.run_sync(_compile, body.files)
    except RuleError as e:
        raise HttpError(422, f"rules refused: {len(e.errors)} error(s)", e.errors) from None


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def _installed_at(server) -> dict[str, str]:
    history = server.watch.history
    return {e["version"]: e["time"] for e in history.entries()} if history is not None else {}


def _kept_dir(server, version: str) -> Path:
    path = version_dir(server.store.dir, version)
    if not _VERSION.match(version) or not path.is_dir():
        raise HttpError(404, f"rules version {version!r} is not kept (upload it with POST /v1/rules)")
    return path


# ------------------------------------------------------------ handlers
async def get_rules(request: Request):
    s = request.server
    v = s.app.rules.version
    return 200, ActiveRules(version=v, directory=str(s.cfg.rules), installed_at=_installed_at(s).get(v))


async def validate(request: Request):
    rules = await _checked(request.body)
    s = request.server
    return 200, Validated(version=rules.version, active=rules.version == s.app.rules.version,
                          kept=version_dir(s.store.dir, rules.version).is_dir(), plans=len(rules.plans),
                          packs=len(rules.packs), sponsors=len(rules.sponsors), subscribers=len(rules.subscribers),
                          ranges=len(rules.ranges), range_subscribers=sum(r.size for r in rules.ranges))


async def upload(request: Request):
    rules = await _checked(request.body)
    s = request.server
    existed = version_dir(s.store.dir, rules.version).is_dir()
    if not existed:
        await trio.to_thread.run_sync(keep, s.store.dir, rules)
    return (200 if existed else 201), Validated(
        version=rules.version, active=rules.version == s.app.rules.version, kept=True, plans=len(rules.plans),
        packs=len(rules.packs), sponsors=len(rules.sponsors), subscribers=len(rules.subscribers),
        ranges=len(rules.ranges), range_subscribers=sum(r.size for r in rules.ranges))


async def versions(request: Request):
    s = request.server
    active = s.app.rules.version
    installed = _installed_at(s)
    out = []
    for v in await trio.to_thread.run_sync(kept_versions, s.store.dir):
        path = version_dir(s.store.dir, v)
        out.append(RuleVersion(version=v, active=v == active, kept_at=_iso(path.stat().st_mtime),
                               installed_at=installed.get(v), files=sorted(p.name for p in path.glob("*.toml"))))
    history = s.watch.history
    return 200, RuleVersions(active=active, previous=history.previous(active) if history else None, versions=out)


async def version_files(request: Request):
    version = request.params["version"]
    path = _kept_dir(request.server, version)
    files = {p.name: p.read_text() for p in sorted(path.glob("*.toml"))}
    return 200, RuleVersionFiles(version=version, active=version == request.server.app.rules.version, files=files)


async def activate(request: Request):
    return 200, await _activate(request.server, request.params["version"])


async def rollback(request: Request):
    s = request.server
    history = s.watch.history
    previous = history.previous(s.app.rules.version) if history is not None else None
    if previous is None:
        raise HttpError(409, f"no version before {s.app.rules.version} is known: activate one by name "
                             "(GET /v1/rules/versions lists them)")
    return 200, await _activate(s, previous)


# ------------------------------------------------------------ activation
async def _activate(server, version: str) -> Activated:
    _kept_dir(server, version)
    try:
        rules = await trio.to_thread.run_sync(load_kept, server.store.dir, version)
    except RuleError as e:
        raise HttpError(422, f"kept rules version {version} does not compile", e.errors) from None
    watch = server.watch
    why = watch.writable()
    if why is not None:
        raise HttpError(409, f"{why}; an activation is written there (docs/running.md)")
    was = server.app.rules.version
    data = server.store.dir
    # Once begun, an activation finishes even if the client goes away: a
    # version in force must not be left unwritten to the directory. Bounded,
    # so a server stopping meanwhile (its charging loop gone) still stops.
    # The marker (ocs/rules/activation.py) makes it survive a crash too: a
    # start finds it and finishes the write.
    locked = False
    with trio.CancelScope(shield=True, deadline=trio.current_time() + ACTIVATION_TIMEOUT) as scope:
        try:
            await trio.to_thread.run_sync(watch.lock.acquire)
            locked = True
            try:
                await trio.to_thread.run_sync(activation.begin, data, version)
            except OSError as e:
                raise HttpError(507, f"cannot record the activation of {version} in "
                                     f"{activation.marker_path(data)}: {e}; nothing changed") from None
            if server.app.rules.version != version:
                try:
                    await _install(server, rules)
                except trio.Cancelled:
                    raise       # the charging loop may still install it: the marker stays for the watch
                except BaseException:
                    if server.app.rules.version != version:     # refused: nothing changed
                        await trio.to_thread.run_sync(_end_quietly, data)
                    raise
            try:
                await trio.to_thread.run_sync(watch.write, rules.files)
            except OSError as e:
                raise HttpError(507, f"version {version} is in force, but writing its files into {watch.dir} "
                                     f"failed: {e}; the write is retried at every poll of the directory, on "
                                     "SIGHUP and at the next start, and the directory is not read until it "
                                     "succeeds") from None
            await trio.to_thread.run_sync(_end_quietly, data)
        finally:
            if locked:
                watch.lock.release()
    if scope.cancelled_caught:
        raise HttpError(503, f"the activation of {version} did not finish within {ACTIVATION_TIMEOUT:.0f} s "
                             f"(version {server.app.rules.version} is in force)")
    return Activated(version=version, was=was, directory=str(watch.dir))


def _end_quietly(data) -> None:
    """The marker goes; if it cannot, the watch or the next start finds it
    and writes the same files again, which is harmless."""
    try:
        activation.end(data)
    except OSError as e:
        log.error("%s: cannot remove the activation marker: %s", activation.marker_path(data), e)


async def _install(server, rules: RuleSet) -> None:
    """Install `rules` the way a reload does, on the charging loop; return
    once durable. HttpError 409 with the installer's reasons if refused."""
    before = server.app.rules.version
    try:
        await server.install_rules(rules)
    except RuleError as e:
        raise HttpError(409, f"version {rules.version} refused, {before} keeps serving", e.errors) from None


VERSION = Param("a rules version (12 hex digits)", "4c1d0e9a7b21")
EXAMPLE = {"files": {"plans.toml": '[[plan]]\nid = "flat"\ntimezone = "Asia/Shanghai"\nbundle = "1 GB"\n'
                                   'overage = { price = "0.0003", per = "1 KB" }\n\n'
                                   '[[subscriber]]\nmsisdn = "8613700000001"\nplan = "flat"\nbalance = "10.00"\n'}}
UNWRITTEN = Answer("the data or rules directory could not be written (a full disk, an I/O error). If the "
                   "error says the version is in force, it is, journaled: its files are written into the rules "
                   "directory at the next poll or start that can, and until then the directory is not read; "
                   "otherwise nothing changed", ErrorBody)
REFUSED = Answer("the files do not validate: `errors` names each file, key and what was expected", ErrorBody)
ROUTES = [
    Route("GET", "/v1/rules", get_rules, "The rules version in force",
          {200: Answer("the version in force and the directory it came from", ActiveRules)}, TAG),
    Route("POST", "/v1/rules/validate", validate, "Validate a rules version without keeping it",
          {200: Answer("valid: the version it would be", Validated), 422: REFUSED},
          TAG, body=RuleFiles, body_example=EXAMPLE,
          description="As `ocs rules check`: every file decoded and the whole set compiled. An activation "
                      "can still be refused (409) when it drops a plan someone is on or a pack someone holds."),
    Route("POST", "/v1/rules", upload, "Upload a rules version: validated and kept, not yet in force",
          {201: Answer("kept as DATA/rules/VERSION", Validated), 200: Answer("that version was kept already", Validated),
           422: REFUSED},
          TAG, body=RuleFiles, body_example=EXAMPLE),
    Route("GET", "/v1/rules/versions", versions, "The kept rules versions",
          {200: Answer("every kept version, which is in force, and when each was installed", RuleVersions)}, TAG),
    Route("GET", "/v1/rules/versions/{version}", version_files, "The files of a kept version",
          {200: Answer("the version's files", RuleVersionFiles), 404: Answer("not kept", ErrorBody)},
          TAG, params={"version": VERSION}),
    Route("POST", "/v1/rules/versions/{version}/activate", activate, "Put a kept version in force",
          {200: Answer("in force, journaled, and written into the rules directory", Activated),
           404: Answer("not kept", ErrorBody),
           409: Answer("refused (a plan in use or a pack held is missing; `errors` says which), or the rules "
                       "directory is not writable; the version in force keeps serving", ErrorBody),
           422: Answer("the kept files no longer compile", ErrorBody),
           503: Answer("the activation did not finish in time (the server is stopping)", ErrorBody),
           507: UNWRITTEN},
          TAG, params={"version": VERSION},
          description="Installed between two batches like a reload: journaled, every subscriber carried "
                      "over. Then the version's files replace the rule files of the rules directory, so the "
                      "directory watch agrees and a restart keeps it. Activating the version in force "
                      "rewrites the directory with it. Rolling back is activating an older version. An "
                      "activation a crash interrupts is completed at the next start."),
    Route("POST", "/v1/rules/rollback", rollback, "Put the previous version back in force",
          {200: Answer("the version in force before the current one is in force again", Activated),
           409: Answer("no earlier version is known, or it is refused", ErrorBody),
           422: Answer("the kept files no longer compile", ErrorBody),
           503: Answer("the activation did not finish in time (the server is stopping)", ErrorBody),
           507: UNWRITTEN},
          TAG, description="The version that was in force before the current one was installed (from the "
                           "installation history); twice in a row returns to where it started."),
]
