"""Every record the engine works on, as one aligned numpy dtype each.

Money is an int64 count of micro-units of the plan's currency (1 yuan =
1,000,000), so tariffs such as 0.0003 yuan per KB are exact integers; volume
is int64 octets. The kernels read and write only these arrays.

Accounts. A subscriber row is also an account: its own plan buckets and
packs, its money (balance, period spend) and its period counters. A member
of a shared plan points at two other rows: `pool`, the row whose shared
buckets and shared packs it draws from, and `payer`, the row whose money
pays its overage. Both are the row itself for a plain subscriber.

Candidates. A reservation remembers which buckets it holds by candidate
number: 0-3 the row's own plan buckets, 4-7 its own packs, 8-11 the pool
row's plan buckets, 12-15 the pool row's packs.
"""
from typing import NamedTuple

import numpy as np

NEVER = -(1 << 31) + 1   # the period of a row that has never been charged (an int32)
SLOTS = 8          # rating-group reservations one session can hold at once
NO_RG = -1         # an MSCC without Rating-Group, or top-level units
PLAN_BUCKETS = 4   # buckets a plan may declare
PACKS = 4          # packs a subscriber may hold at once
HOLDS = 4          # buckets one grant may draw from
THRESHOLDS = 64    # per plan (one bit each in `notified`)

SUBSCRIBER = np.dtype([
    ("plan", np.int32),
    ("active", np.int8),
    ("reopened", np.int8),        # the caps are lifted for this period (reopen on request)
    ("zone", np.int16),           # -1: the plan's timezone
    ("anchor", np.int32),         # local day number of activation (anniversary periods)
    ("payer", np.int32),          # row whose money pays this row's overage
    ("pool", np.int32),           # row holding the shared buckets this row draws from
    ("day", np.int32),            # local day of the daily counters (day_used, day_spent)
    ("pool_cap", np.int64),       # a member's sub-cap on the pool per period, octets; -1 none
    ("pool_used", np.int64),      # octets this member took from the pool this period
    ("pool_res", np.int64),
    ("balance", np.int64),        # micro-units; below 0 only by over-reported usage or postpaid
    ("period", np.int32),         # the period these counters belong to
    ("period_day", np.int32),     # the local day `period` was last found current (periods turn at midnight)
    ("b_used", np.int64, (PLAN_BUCKETS,)),   # octets taken from each plan bucket this period
    ("b_res", np.int64, (PLAN_BUCKETS,)),    # octets held by open reservations
    ("k_def", np.int32, (PACKS,)),           # pack definition; -1: empty slot
    ("k_vol", np.int64, (PACKS,)),
    ("k_used", np.int64, (PACKS,)),
    ("k_res", np.int64, (PACKS,)),
    ("k_from", np.float64, (PACKS,)),        # bought at (exactly: usage granted before it is not the pack's)
    ("k_until", np.uint32, (PACKS,)),        # valid until, whole epoch seconds
    ("over_used", np.int64),      # octets charged as money this period (caps, ladders)
    ("over_res", np.int64),
    ("spent", np.int64),          # micro-units charged this period
    ("res_money", np.int64),      # micro-units held by open reservations
    ("total_used", np.int64),     # every octet this period (the absolute ceiling)
    ("total_res", np.int64),
    ("notified", np.int64),       # thresholds already announced this period, one bit each
    ("day_used", np.int64),       # octets reported that day
    ("day_spent", np.int64),      # micro-units charged for them
    ("customer_type", np.int16),  # context attributes from provisioning (rule names as numbers; 0 none)
    ("terminal_type", np.int16),
    ("partner", np.int16),
    ("used_time", np.int64),      # seconds reported (time units are accepted, not rated)
], align=True)

SESSION = np.dtype([
    ("sub", np.int64),            # -1: free row
    ("expiry", np.float64),       # Tcc deadline (RFC 4006 section 13)
    ("last_number", np.int64),
    ("rg", np.int64, (SLOTS,)),   # rating group per slot; SLOT_FREE when empty
    ("granted", np.int64, (SLOTS,)),
    ("grant_t", np.float64, (SLOTS,)),       # when the grant was made: its usage is rated then
    ("res_money", np.int64, (SLOTS,)),
    ("res_over", np.int64, (SLOTS,)),
    ("sp", np.int32, (SLOTS,)),              # sponsor contract holding part of the grant; -1 none
    ("sp_octets", np.int64, (SLOTS,)),       # octets held from the sponsor's budget
    ("sp_money", np.int64, (SLOTS,)),        # the sponsor's micro-units they would cost
    ("hold_c", np.int8, (SLOTS, HOLDS)),     # candidate number per hold; -1 none
    ("hold_v", np.int64, (SLOTS, HOLDS)),
], align=True)
SLOT_FREE = np.iinfo(np.int64).min

# What happens to traffic no bucket covers, and once a cap is reached.
CHARGE, THROTTLE, STOP, FREE = 0, 1, 2, 3
# Period kinds and resets.
MONTH, QUARTER, DAYS = 0, 1, 2
CALENDAR, ANNIVERSARY = 0, 1

PLAN = np.dtype([
    ("zone", np.int32),
    ("period_kind", np.int8),
    ("reset", np.int8),
    ("postpaid", np.int8),
    ("after_bundle", np.int8),    # CHARGE, THROTTLE or STOP
    ("cap_action", np.int8),      # STOP, THROTTLE or FREE
    ("reopen", np.int8),          # a reopen lifts the fee and volume caps for the period
    ("period_days", np.int32),
    ("period_anchor", np.int32),  # local day number periods of DAYS count from
    ("fee_cap", np.int64),        # micro-units of charges per period; -1 none
    ("volume_cap", np.int64),     # octets charged as money per period; -1 none
    ("ceiling", np.int64),        # every octet per period, nothing lifts it; -1 none
    ("tariff", np.int32),         # default money tariff; -1 none
    ("filter", np.int32),         # throttle Filter-Id index; -1 none
    ("trial", np.int32),          # pack given to new or zero-usage subscribers; -1 none
    ("bucket_start", np.int32),
    ("bucket_count", np.int32),
    ("order_start", np.int32),    # consumption order entries
    ("order_count", np.int32),
    ("rate_start", np.int32),
    ("rate_count", np.int32),
    ("thr_start", np.int32),
    ("thr_count", np.int32),
    ("edge_start", np.int32),     # time-of-day band edges (seconds), for Validity-Time
    ("edge_count", np.int32),
    ("default_grant", np.int64),
    ("max_grant", np.int64),
    ("validity", np.int32),       # Validity-Time, seconds
    ("all_rgs", np.int8),         # 1: every rating group is rated
    ("rg_start", np.int32),       # this plan's slice of the rated / denied rating group lists
    ("rg_count", np.int32),
    ("deny_start", np.int32),
    ("deny_count", np.int32),
    ("home_start", np.int32),     # home networks (plmn keys in `cond`): others are roaming
    ("home_count", np.int32),
], align=True)

# A plan bucket or a pack definition: volume, which traffic, when.
BUCKET = np.dtype([
    ("volume", np.int64),
    ("shared", np.int8),          # held on the pool row
    ("rg_start", np.int32),       # rating groups it covers (rg_count -1: all)
    ("rg_count", np.int32),
    ("hour_from", np.int32),      # local seconds of day; -1: all day
    ("hour_to", np.int32),
    ("price", np.int64),          # packs: micro-units the purchase costs
    ("days", np.int32),           # packs: validity in days; 0: until the period ends
], align=True)

# Order entries: >= 0 a plan bucket (index within the plan); ANY_PACK every
# pack not named; <= PACK_BASE - d names pack definition d.
ANY_PACK = -1
PACK_BASE = -2

# The context a rate may require: each a slice of `cond` (count -1: any).
CONTEXT = ("apn", "rat", "customer_type", "terminal_type", "partner")
RATE = np.dtype([
    ("rg_start", np.int32),
    ("rg_count", np.int32),       # -1: any rating group
    ("hour_from", np.int32),
    ("hour_to", np.int32),
    ("tariff", np.int32),         # FREE_RATE: zero-rated
    ("buckets", np.int8),         # 1: the traffic draws from the buckets first
    ("deny", np.int8),            # 1: the traffic is refused (4010)
    ("roaming", np.int8),         # -1 any, 0 at home, 1 roaming
    ("cond_start", np.int32, (len(CONTEXT),)),
    ("cond_count", np.int32, (len(CONTEXT),)),
], align=True)
FREE_RATE = -2                    # a rate's tariff for zero-rated traffic (-1 in a plan: no tariff)

# A tariff is a ladder of steps over the period's charged volume; a flat
# tariff is one step. Rounding: PER_REPORT rounds each report up to whole
# units (flat tariffs only); CUMULATIVE prices the period's running total.
PER_REPORT, CUMULATIVE = 0, 1
TARIFF = np.dtype([
    ("step_start", np.int32),
    ("step_count", np.int32),
    ("rounding", np.int8),
    ("free", np.int8),            # every step costs nothing: does not count toward caps
], align=True)

STEP = np.dtype([
    ("start", np.int64),          # octets of charged volume where the step begins
    ("base", np.int64),           # micro-units the period total costs at `start`
    ("price", np.int64),          # micro-units per started unit beyond `start`
    ("unit", np.int64),
], align=True)

# Threshold kinds; each fires once per period.
T_BUCKET, T_SPENT, T_CAP, T_THROTTLED, T_CEILING, T_CREDIT, T_DAILY = 0, 1, 2, 3, 4, 5, 6
THRESHOLD = np.dtype([
    ("kind", np.int8),
    ("bucket", np.int32),         # T_BUCKET: plan bucket index
    ("value", np.int64),          # T_BUCKET: percent; T_SPENT: micro-units
], align=True)

EVENT = np.dtype([
    ("sub", np.int64),            # the row the threshold is about
    ("plan", np.int32),
    ("threshold", np.int32),      # index within the plan's thresholds
    ("value", np.int64),          # the counter that crossed it (T_DAILY: octets that day)
    ("money", np.int64),          # T_DAILY: micro-units charged that day
    ("day", np.int64),            # T_DAILY: the local day summed up
], align=True)

# The local calendar of each timezone, filled in before every batch.
ZONE = np.dtype([
    ("day", np.int64),            # local days since 1970-01-01
    ("sec", np.int32),            # local seconds since midnight
    ("year", np.int32),
    ("month", np.int32),
    ("mday", np.int32),
    ("offset", np.int64),         # seconds east of UTC
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
    ("apn", np.int64),            # the CCR's context (fastccr): APN key, 0 absent
    ("rat", np.int32),            # 3GPP-RAT-Type, -1 absent
    ("plmn", np.int64),           # serving network MCC-MNC key, -1 absent
], align=True)

# Final-Unit-Indication in an MSCC.
FUI_NONE, FUI_TERMINATE, FUI_RESTRICT = 0, 1, 2

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
    ("final", np.int8),           # FUI_NONE, FUI_TERMINATE or FUI_RESTRICT
    ("filter", np.int32),         # FUI_RESTRICT: Filter-Id index
    ("validity", np.int32),
    ("charged", np.int64),        # micro-units debited for the reported usage
    ("from_bundle", np.int64),    # octets of the reported usage taken from buckets and packs
    ("sponsor", np.int32),        # contract that paid part of the reported usage; -1 none
    ("sponsored", np.int64),      # octets of it the sponsor paid
    ("sponsor_charged", np.int64),   # micro-units billed to the sponsor for them
    ("reason", np.int8),          # why the grant stopped short (notices.R_* bits; metrics)
    ("qht", np.int32),            # Quota-Holding-Time to send with the grant; 0 none (rules.quota)
    ("vqt", np.int64),            # Volume-Quota-Threshold to send with the grant; 0 none
], align=True)

# A sponsor contract (rules): who pays for which traffic, up to what budget.
CONTRACT = np.dtype([
    ("zone", np.int32),
    ("period_kind", np.int8),
    ("fallback", np.int8),        # CHARGE (the subscriber pays), STOP (denied) or THROTTLE
    ("period_days", np.int32),
    ("period_anchor", np.int32),
    ("budget_money", np.int64),   # micro-units per period; -1: a volume budget
    ("budget_volume", np.int64),  # octets per period; -1: a money budget
    ("price", np.int64),          # what the sponsor is billed, per started unit of each report
    ("unit", np.int64),
    ("rg_start", np.int32), ("rg_count", np.int32),       # in `cond`; count -1: any
    ("sid_start", np.int32), ("sid_count", np.int32),
    ("apn_start", np.int32), ("apn_count", np.int32),
    ("plan_start", np.int32), ("plan_count", np.int32),   # eligible plans
    ("elig_start", np.int32), ("elig_count", np.int32),   # eligible rows, in `elig`
    ("valid_from", np.float64),
    ("valid_until", np.float64),
    ("filter", np.int32),
], align=True)

# A sponsor's account for its current period (the store keeps it).
SPONSOR = np.dtype([
    ("period", np.int64),
    ("used", np.int64),           # octets paid this period
    ("spent", np.int64),          # micro-units billed this period
    ("res_octets", np.int64),     # held by open grants
    ("res_money", np.int64),
], align=True)


def new_table(dtype: np.dtype, n: int) -> np.ndarray:
    t = np.zeros(n, dtype=dtype)
    if dtype is SESSION:
        t["sub"] = -1
        t["rg"] = SLOT_FREE
        t["hold_c"] = -1
        t["sp"] = -1
    if dtype is SUBSCRIBER:
        t["k_def"] = -1
        t["zone"] = -1
        t["pool_cap"] = -1
    return t


class Tables(NamedTuple):
    """The compiled rules, as the kernels read them."""
    plans: np.ndarray
    buckets: np.ndarray       # plan buckets
    packs: np.ndarray         # pack definitions
    bucket_rgs: np.ndarray    # rating-group lists of buckets and packs
    order: np.ndarray
    rates: np.ndarray
    rate_rgs: np.ndarray
    tariffs: np.ndarray
    steps: np.ndarray
    thresholds: np.ndarray
    edges: np.ndarray
    cond: np.ndarray          # the context values rates require, home networks, contract lists
    contracts: np.ndarray     # sponsor contracts (row 0 with unit 0 when there are none)
    elig: np.ndarray          # rows eligible for contracts that list subscribers
    rated_rgs: np.ndarray
    denied_rgs: np.ndarray
    zones: np.ndarray




# One usage row per reported MSCC, journaled with its batch (docs/usage.md).
USAGE = np.dtype([("req", np.int32), ("sub", np.int64), ("rg", np.int64), ("used", np.int64),
                  ("used_time", np.int64), ("from_bundle", np.int64), ("charged", np.int64),
                  ("sess", np.int64), ("service_id", np.int64), ("sponsor", np.int32),
                  ("sponsored", np.int64), ("sponsor_charged", np.int64)])


# What one grant decided (`kernel._grant`): octets granted, money and
# out-of-bundle octets held, the octets counted against the total, octets
# from the pool, the Final-Unit-Indication, why it stopped short (R_* bits).
GRANT = np.dtype([("granted", np.int64), ("money", np.int64), ("over", np.int64), ("total", np.int64),
                  ("pool", np.int64), ("fui", np.int64), ("reason", np.int64)])
# What a sponsor contract holds for one grant: the contract (-1 none), octets, money.
SPONSOR_HOLD = np.dtype([("contract", np.int64), ("octets", np.int64), ("money", np.int64)])
# What `kernel._charge` reports of a batch: rows of dirty subscribers, sessions,
# events written, and grants a sponsor took part in.
BATCH_COUNTS = np.dtype([("subs", np.int64), ("sessions", np.int64), ("events", np.int64),
                         ("sponsored", np.int64)])
