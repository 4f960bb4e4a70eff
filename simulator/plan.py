"""What each simulated fan will do, decided up front from the seed.

Plans are plain data (no Django), built in the command's process and handed
to the crowd processes, so one seed replays the same crowd: the same
arrival times relative to the on-sale, quantities and behaviours.
"""

import random
from dataclasses import dataclass
from enum import StrEnum


class Behaviour(StrEnum):
    PAY = "pay"  # pays with a good card within the hold
    DECLINE = "decline"  # pays with a card the bank declines
    ABANDON = "abandon"  # books, then never pays: the hold expires
    LATE_PAY = "late_pay"  # books, pays with a good card just after the hold expired


GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000341"


@dataclass(frozen=True)
class FanPlan:
    index: int
    api_token: str
    arrive_at: float  # wall clock (epoch seconds)
    early: bool  # arrives before the sale opens (the pre-queue)
    quantity: int
    behaviour: Behaviour
    # Late payers pay this long after their hold's expiry: spread over a
    # couple of seconds so some land before the server has expired the hold
    # (late payment taken or refunded) and some after (the intent is cancelled).
    late_delay: float


def build_plans(
    *,
    api_tokens: list[str],
    seed: int,
    start_at: float,
    on_sale_at: float,
    early: float,
    ramp_seconds: float,
    max_per_order: int,
    abandon: float,
    decline: float,
    late_pay: float,
) -> list[FanPlan]:
    """One plan per token. Proportions are exact counts (rounded), not
    independent draws, so a small crowd still shows every behaviour."""
    if abandon + decline + late_pay > 1:
        raise ValueError("--abandon, --decline and --late-pay add up to more than 1")
    rng = random.Random(seed)
    n = len(api_tokens)
    behaviours = (
        [Behaviour.ABANDON] * round(n * abandon)
        + [Behaviour.DECLINE] * round(n * decline)
        + [Behaviour.LATE_PAY] * round(n * late_pay)
    )
    behaviours += [Behaviour.PAY] * (n - len(behaviours))
    rng.shuffle(behaviours)
    # No pre-queue when the sale is already open.
    early_count = round(n * early) if on_sale_at > start_at else 0
    pre_window = max(on_sale_at - start_at - 0.5, 0.0)
    plans = []
    for i, token in enumerate(api_tokens):
        is_early = i < early_count
        arrive = start_at + rng.uniform(0, pre_window) if is_early else on_sale_at + rng.uniform(0, ramp_seconds)
        plans.append(
            FanPlan(
                index=i,
                api_token=token,
                arrive_at=arrive,
                early=is_early,
                quantity=rng.randint(1, max_per_order),
                behaviour=behaviours[i],
                late_delay=rng.uniform(0, 2.0),
            )
        )
    return plans
