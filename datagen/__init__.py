"""The synthetic raw world: users, events, reviews, churn labels and the oracle behind them.

A hidden per-user **satisfaction** ``s(t)`` drives everything (``datagen.population``):

* Each user has a base satisfaction in [0.55, 0.95]. Half the users start a decline at a random
  time (from 45 days before the window to after its end) and lose 1/50 to 1/15 per day until a
  personal floor in [0.02, 0.3].
* The daily churn **hazard** is
  ``h(t) = 0.001 * exp(9 * max(z(t - 28d) - 0.45, 0)) * tenure(t) * premium * age`` with
  ``z = 1 - s``: dissatisfaction beyond a threshold raises it up to ~60x, 28 days after the fact
  (people disengage first and leave weeks later); ``tenure = 1 + 3 * exp(-days since signup /
  90)``, ``premium = 0.35`` for subscribers, ``age = 1 + 0.8 * exp(-(age - 18) / 12)``. The
  churn time inverts the cumulative hazard ``H`` (users x 182 days grid) at an Exp(1) draw; the
  oracle probability of a (user, cutoff) row is ``1 - exp(-(H(cutoff + 30d) - H(cutoff)))``,
  the exact law its label was drawn from.
* **Behaviour** shows satisfaction at once (``datagen.events``): sessions per day are Poisson
  with rate ``0.0394 * activity * (s / 0.8)**4`` (``activity`` lognormal per user; the fixed
  constant makes the standard calendar average 24 events per user); while satisfaction falls a
  user opens support sessions (0.2 per day, plus ``0.08 * z**4`` per day at any time); unhappy
  users buy less and contact support more inside ordinary sessions. Nothing happens after churn.
  Because the hazard lags satisfaction, the risk behind a label is visible in behaviour before
  its cutoff, so a model on behavioural features comes close to the oracle (docs/benchmarks.md).
* **Reviews** (``datagen.reviews``): 22% of users are writers, each reviewing a personal
  (lognormal) share of their own events within two days of each, so active users write more;
  while satisfaction falls a user writes a complaint at 0.025 per day (about half of the
  declining users write one). About 21% of users write, 0.6 reviews per user overall. The rating
  follows satisfaction at the time of writing, the tone follows the rating,
  and the text is composed from tone-matched fragments: 2-3 sentences on one primary aspect
  (delivery, price, quality, support, app, returns), optionally one on a secondary aspect,
  between an optional opener and closer.

**Planted drift** (``drift=True``), from calendar day 154 on (``WorldSpec.drift_start``, the
standard calendar's last 28 days; a world that ends earlier has none):
a new Android app (half of all events then come from ``android``; 70% of new signups use it)
and a delivery problem (60% of reviews written then are about delivery, two stars lower). Drift
does not touch churn: labels and the oracle are identical with and without it.

**Causal and prefix-stable.** Per-user parameters come from ``numpy.random.Generator(PCG64)``
streams spawned from the seed, one draw per user whatever the world's end. Everything that
happens on window day d (sessions, events, unusable rows, reviews, complaints) is drawn from
that day's own streams (``day_rng(seed, stream, d)``) and the users' state during day d, and
nothing is scaled by a total over the window. So every raw row dated before t is a function of
the world before t, and ``churnfs generate --end`` worlds that differ only in their end agree row
for row before the earlier end (``tests/data/test_generate_prefix.py``, the guard for every
generator change). Nothing reads the clock: the same users and seed give byte-identical files,
and turning drift off changes only the drifted values.
"""

from datagen.generator import SCHEMAS, generate_world, parse_positive_int

__all__ = ["SCHEMAS", "generate_world", "parse_positive_int"]
