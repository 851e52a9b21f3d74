"""Run Debian's freeDiameterd (1.2.1) as an independent Diameter client peer.

    async with freediameter_peer(port, "ocs.test.example", tmp_path) as fd:
        await fd.wait_open()        # CER/CEA done, peer in STATE_OPEN
        await fd.wait_watchdog()    # one DWR/DWA exchange, either direction

freeDiameterd connects over plain TCP to 127.0.0.1:PORT, 0..4 s after it
starts (freeDiameter delays the first attempt at random), so STATE_OPEN
comes 0.1..4 s after entering the context. Its CER carries
    Origin-Host = `identity` ("fd.test.example"), Origin-Realm = `realm`
    ("test.example"), Auth-Application-Id = 4 (and no other application),
    Inband-Security-Id = 0, Vendor-Id = 0, Product-Name = "freeDiameter",
    Firmware-Revision = 10201, Origin-State-Id, and Host-IP-Address for every
    address of the machine (not necessarily 127.0.0.1),
so the server under test must accept that Origin-Host/Realm as a peer.

Configuration keys (the file is written to tmp_path/freeDiameter.conf):
    Identity, Realm      our Origin-Host and Origin-Realm.
    Port = 0; SecPort = 0;
                         no listening sockets at all: we only connect out.
    No_SCTP;             TCP only (also repeated per peer).
    NoRelay;             otherwise the CER advertises the Relay application
                         (Auth-Application-Id 0xffffffff).
    TwTimer              watchdog interval; 1.2.1 rejects values below 6.
                         freeDiameter adds jitter (RFC 3539): each DWR leaves
                         Tw-2..Tw+2 s after the last traffic, 4..8 s for 6.
    TcTimer              reconnect delay if the connection fails or the server
                         is not listening yet; 1.2.1 defaults to 30 s, we
                         use 1 s, which with the same jitter means 0..4 s.
    LoadExtension        app4.fdx, see below.
    ConnectPeer = "<server identity>" { ConnectTo = "127.0.0.1"; Port = N;
                         No_TLS; No_SCTP; };
                         the server's CEA Origin-Host must equal this name,
                         or freeDiameterd drops the connection.
No TLS_Cred is needed: without it 1.2.1 just logs "TLS is disabled".

Auth-Application-Id 4: freeDiameter advertises only the applications that an
extension registers with fd_disp_app_support(), and none of Debian's
freediameter-extensions does (dict_dcca only adds dictionary entries). So we
compile a short extension (APP4_C) with cc against the headers from the
libfreediameter-dev package.

Log lines matched (freeDiameterd -dd, i.e. DEBUG level, one line each;
<server> is the ConnectPeer name; received messages always say "(no model)"):
    open:      'STATE_WAITCEA'<TAB>-> 'STATE_OPEN'<TAB>'<server>'
    watchdog:  SENT to '<server>': 'Device-Watchdog-Request'0/280 f:R--- ...
               RCV from '<server>': (no model)0/280 f:---- ...
            or RCV from '<server>': (no model)0/280 f:R--- ...
               SENT to '<server>': 'Device-Watchdog-Answer'0/280 f:---- ...

What freeDiameterd refuses in a CEA (it closes and retries after Tc):
a Result-Code other than 2001, an Origin-Host other than the ConnectPeer
name, or no Host-IP-Address, Vendor-Id or Product-Name (RFC 6733 5.3.2). It
does not check Origin-Realm or that the CEA lists application 4, so a test
must assert those itself.
If the server does not answer the DPR sent on exit, stopping takes ~16 s.
The waits use trio's clock: run these tests without autojump_clock.
"""

import contextlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import trio

FREEDIAMETERD = "/usr/bin/freeDiameterd"
HEADER = "/usr/include/freeDiameter/extension.h"

APP4_C = r"""
#include <freeDiameter/extension.h>

static int app4_init(char *conffile)
{
	struct dict_application_data data = { 4, "Diameter Credit Control Application" };
	struct dict_object *app = NULL;
	struct dictionary *dict = fd_g_config->cnf_dict;
	CHECK_FCT(fd_dict_search(dict, DICT_APPLICATION, APPLICATION_BY_ID,
				 &data.application_id, &app, 0));
	if (!app)
		CHECK_FCT(fd_dict_new(dict, DICT_APPLICATION, &data, NULL, &app));
	return fd_disp_app_support(app, NULL, 1, 0);
}

EXTENSION_ENTRY("app4", app4_init);
"""


def unavailable() -> str | None:
    """Why freediameter_peer cannot run here, or None if it can."""
    if not Path(FREEDIAMETERD).exists():
        return "freeDiameterd missing (apt-get install freediameterd)"
    if not Path(HEADER).exists():
        return "freeDiameter headers missing (apt-get install libfreediameter-dev)"
    if shutil.which("cc") is None:
        return "no C compiler (apt-get install gcc)"
    return None


@dataclass
class FreeDiameterPeer:
    process: trio.Process
    log_path: Path
    server_identity: str
    tw_seconds: int

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_for(self, pattern: str, timeout: float) -> re.Match:
        """Wait until `pattern` (a regex, DOTALL) matches the log."""
        with trio.move_on_after(timeout):
            while True:
                exited = self.process.poll() is not None
                if match := re.search(pattern, self.log(), re.DOTALL):
                    return match
                if exited:
                    break
                await trio.sleep(0.05)
        state = "exited" if self.process.poll() is not None else "running"
        raise AssertionError(
            f"freeDiameterd ({state}) log never matched {pattern!r}; "
            f"log tail:\n{self.log()[-3000:]}"
        )

    async def wait_open(self, timeout: float = 10.0) -> None:
        peer = re.escape(self.server_identity)
        await self.wait_for(rf"-> 'STATE_OPEN'\t'{peer}'", timeout)

    async def wait_watchdog(self, timeout: float | None = None) -> None:
        """Wait for a DWR and then its DWA, sent by either side."""
        timeout = self.tw_seconds + 5 if timeout is None else timeout
        peer = re.escape(self.server_identity)
        sent, rcvd = f"SENT to '{peer}': [^\n]*0/280", f"RCV from '{peer}': [^\n]*0/280"
        await self.wait_for(f"{sent} f:R.*{rcvd} f:-|{rcvd} f:R.*{sent} f:-", timeout)


async def build_extension(tmp_path: Path) -> Path:
    source, extension = tmp_path / "app4.c", tmp_path / "app4.fdx"
    source.write_text(APP4_C)
    await trio.run_process(
        ["cc", "-shared", "-fPIC", "-o", extension, source], capture_stderr=True
    )
    return extension


@contextlib.asynccontextmanager
async def freediameter_peer(
    server_port: int,
    server_identity: str,
    tmp_path: Path,
    *,
    identity: str = "fd.test.example",
    realm: str = "test.example",
    tw_seconds: int = 6,
    tc_seconds: int = 1,
):
    """Run freeDiameterd connecting to the server; stop it (DPR) on exit."""
    extension = await build_extension(tmp_path)
    conf = tmp_path / "freeDiameter.conf"
    conf.write_text(
        f'Identity = "{identity}";\n'
        f'Realm = "{realm}";\n'
        "Port = 0;\nSecPort = 0;\nNo_SCTP;\nNoRelay;\n"
        f"TwTimer = {tw_seconds};\nTcTimer = {tc_seconds};\n"
        f'LoadExtension = "{extension}";\n'
        f'ConnectPeer = "{server_identity}" {{ ConnectTo = "127.0.0.1"; '
        f"Port = {server_port}; No_TLS; No_SCTP; }};\n"
    )
    log_path = tmp_path / "freeDiameterd.log"
    with open(log_path, "wb") as log:
        process = await trio.lowlevel.open_process(
            [FREEDIAMETERD, "-c", conf, "-dd"], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield FreeDiameterPeer(process, log_path, server_identity, tw_seconds)
    finally:
        # SIGTERM starts a clean shutdown: DPR to the server, then up to 16 s
        # for the DPA. Shielded so that a cancelled test still stops it.
        process.terminate()
        with trio.CancelScope(shield=True):
            with trio.move_on_after(20):
                await process.wait()
            process.kill()
            await process.wait()
