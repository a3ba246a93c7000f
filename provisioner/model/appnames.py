"""Heroku-style random app names such as `quiet-river-4821` (pure, seeded by the caller)."""

from __future__ import annotations

import random

ADJECTIVES = (
    "quiet autumn hidden bitter misty silent empty dry dark summer icy delicate quiet white cool "
    "spring winter patient twilight dawn crimson wispy weathered blue billowing broken cold damp "
    "falling frosty green long late lingering bold little morning muddy old red rough still small "
    "sparkling shy wandering withered wild black young holy solitary fragrant aged snowy proud "
    "floral restless divine polished ancient purple lively nameless"
).split()
NOUNS = (
    "waterfall river breeze moon rain wind sea morning snow lake sunset pine shadow leaf dawn "
    "glitter forest hill cloud meadow sun glade bird brook butterfly bush dew dust field fire "
    "flower firefly feather grass haze mountain night pond darkness snowflake silence sound sky "
    "shape surf thunder violet water wildflower wave resonance dream cherry tree fog frost voice "
    "paper frog smoke star"
).split()


def random_app_name(rng: random.Random | None = None) -> str:
    rng = rng or random.SystemRandom()
    return f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}-{rng.randint(1000, 9999)}"
