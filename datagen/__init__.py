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
  with rate ``activity * (s / 0.8)**4`` (``activity`` lognormal per user, scaled so the world
  averages 24 events per user); while satisfaction falls a user opens support sessions
  (0.2 per day, plus ``0.08 * z**4`` per day at any time); unhappy users buy less and contact
  support more inside ordinary sessions. Nothing happens after churn. Because the hazard lags
  satisfaction, the risk behind a label is visible in behaviour before its cutoff: a model on
  behavioural features recovers ~0.97 of the oracle's ROC-AUC.
* **Reviews** (``datagen.reviews``): about 29% of users write (0.6 reviews per user overall);
  active users write more, and half the declining users write a complaint while satisfaction
  falls. The rating follows satisfaction on the day of writing, the tone follows the rating,
  and the text is composed from tone-matched fragments: 2-3 sentences on one primary aspect
  (delivery, price, quality, support, app, returns), optionally one on a secondary aspect,
  between an optional opener and closer.

**Planted drift** (``drift=True``), in the window's last 28 days (``WorldSpec.drift_start``):
a new Android app (half of all events then come from ``android``; 70% of new signups use it)
and a delivery problem (60% of reviews written then are about delivery, two stars lower). Drift
does not touch churn: labels and the oracle are identical with and without it.

Every random draw comes from ``numpy.random.Generator(PCG64)`` streams spawned from the seed,
in a fixed order with fixed sizes, and nothing reads the clock: the same users and seed give
byte-identical files, and turning drift off changes only the drifted values.
"""

from datagen.generator import SCHEMAS, generate_world, parse_positive_int

__all__ = ["SCHEMAS", "generate_world", "parse_positive_int"]
