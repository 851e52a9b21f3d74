"""Every record the engine works on, as one aligned numpy dtype each.

Money is an int64 count of micro-units of the plan's currency (1 yuan =
1,000,000), so tariffs such as 0.0003 yuan per KB are exact integers; volume
is int64 octets. The kernels read and write only these arrays.
"""
import numpy as np

SLOTS = 8          # rating-group reservations one session can hold at once
NO_RG = -1         # an MSCC without Rating-Group, or top-level units

SUBSCRIBER = np.dtype([
    ("plan", np.int32),
    ("active", np.int8),
    ("balance", np.int64),        # micro-units; may go below 0 only by over-reported usage
    ("period", np.int64),         # the bundle period these counters belong to
    ("bundle_used", np.int64),    # octets taken from the bundle this period
    ("overage_used", np.int64),   # octets charged as overage this period
    ("spent", np.int64),          # micro-units charged this period
    ("res_bundle", np.int64),     # bundle octets held by open reservations
    ("res_money", np.int64),      # micro-units held by open reservations
    ("used_time", np.int64),      # seconds reported (time units are accepted, not rated)
], align=True)

SESSION = np.dtype([
    ("sub", np.int64),            # -1: free row
    ("expiry", np.float64),       # Tcc deadline (RFC 4006 section 13)
    ("last_number", np.int64),
    ("rg", np.int64, (SLOTS,)),   # rating group per slot; SLOT_FREE when empty
    ("res_bundle", np.int64, (SLOTS,)),
    ("res_money", np.int64, (SLOTS,)),
    ("granted", np.int64, (SLOTS,)),
], align=True)
SLOT_FREE = np.iinfo(np.int64).min

PLAN = np.dtype([
    ("bundle", np.int64),         # octets per period
    ("unit", np.int64),           # overage rounding unit, octets (per started unit)
    ("price", np.int64),          # micro-units per overage unit; -1: no overage (data stops)
    ("default_grant", np.int64),
    ("max_grant", np.int64),
    ("validity", np.int32),       # Validity-Time, seconds
    ("all_rgs", np.int8),         # 1: every rating group is rated
    ("rg_start", np.int32),       # this plan's slice of the rated / denied rating group lists
    ("rg_count", np.int32),
    ("deny_start", np.int32),
    ("deny_count", np.int32),
    ("period", np.int64),         # the current period id, set before each batch
], align=True)

REQUEST = np.dtype([
    ("sub", np.int64),            # -1: unknown subscriber
    ("sess", np.int64),
    ("type", np.int32),           # CC-Request-Type
    ("action", np.int32),         # Requested-Action for events; -1 absent
    ("mscc_start", np.int32),
    ("mscc_count", np.int32),
    ("result", np.int32),         # top-level Result-Code decided by the engine (0: not yet)
    ("check_balance", np.int32),  # Check-Balance-Result, -1 none
], align=True)

MSCC = np.dtype([
    ("rg", np.int64),             # NO_RG when absent
    ("service_id", np.int64),     # Service-Identifier, -1 when absent
    ("has_rsu", np.int8),
    ("rsu_octets", np.int64),     # 0: the OCS chooses
    ("rsu_time", np.int64),
    ("used", np.int64),           # -1: no USU
    ("used_time", np.int64),
    ("result", np.int32),
    ("granted", np.int64),        # -1: no GSU in the answer
    ("granted_time", np.int64),
    ("final", np.int8),           # 1: these are the final units (FUI TERMINATE)
    ("validity", np.int32),
    ("charged", np.int64),        # micro-units debited for the reported usage
    ("from_bundle", np.int64),    # octets of the reported usage taken from the bundle
], align=True)


def new_table(dtype: np.dtype, n: int) -> np.ndarray:
    t = np.zeros(n, dtype=dtype)
    if dtype is SESSION:
        t["sub"] = -1
        t["rg"] = SLOT_FREE
    return t
