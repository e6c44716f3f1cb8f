"""The synthetic raw world: users, events, reviews, churn labels and the oracle behind them.

A hidden per-user **satisfaction** process drives everything (``datagen.population``):

* Each user has a base satisfaction ``s0`` in [0.55, 0.95]. About 40% of users start a decline
  at a random time (some before the window, some after it) and lose 1/55 to 1/18 of satisfaction
  per day until a personal floor (0.02 to 0.45).
* The daily churn **hazard** is ``h(t) = h0 * exp(6.5 * z(t)**2) * tenure(t) * premium`` with
  ``z = 1 - s``: convex in dissatisfaction, 1 + 1.5 * exp(-tenure / 60 days) for new accounts,
  0.45 for premium subscribers. The churn time is drawn by inverting the cumulative hazard ``H``
  (daily grid, users x 182 days) at an Exp(1) draw; the oracle probability of a (user, cutoff)
  row is ``1 - exp(-(H(cutoff + 30d) - H(cutoff)))``, the exact law the label was drawn from.
* **Behaviour** follows satisfaction (``datagen.events``): sessions per day are Poisson with
  rate ``activity_rate * (s / 0.8)**2`` (a lognormal, heavy-tailed per-user rate, scaled so the
  world averages 24 events per user); unhappy users add support sessions at rate
  ``0.12 * z**3`` per day, buy less (add-to-cart and purchase shares fall with ``s``) and
  contact support more inside ordinary sessions. Nothing happens after churn.
* **Reviews** (``datagen.reviews``): about 28% of users write, more active users more often
  (0.6 reviews per user overall). The rating follows satisfaction on the day of writing, the tone
  follows the rating, and the text is composed from tone-matched fragments about one primary
  aspect (delivery, price, quality, support, app, returns), optionally one secondary aspect.

**Planted drift** (``drift=True``), in the window's last 28 days (``WorldSpec.drift_start``):
a new Android app (half of all events come from ``android``; 70% of new signups use it) and a
delivery problem (60% of reviews written then are about delivery, two stars lower). Drift does
not change churn, so labels and the oracle are the same with and without it.

Every random draw comes from ``numpy.random.Generator(PCG64)`` streams spawned from the seed,
in a fixed order with fixed sizes, and nothing reads the clock: the same users and seed give
byte-identical files, and turning drift off changes only the drifted values.
"""

from datagen.generator import SCHEMAS, generate_world, parse_positive_int

__all__ = ["SCHEMAS", "generate_world", "parse_positive_int"]
