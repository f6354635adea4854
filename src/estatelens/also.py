"""Open-plan rooms: a second room type (`also`) for photos that show two.

A kitchen photo with the dining table in view is also a dining room; a living room with a dining
area is also a dining room. The room-type probabilities do not say this: their second choice is
shown in the photo only about one time in three, however high it is (data/labels/also.csv). What
does say it is the furniture a room type follows from. The bundle's `also/` folder holds one
logistic "cue" head per open-plan room type on the same embedding as the attribute heads
(attributes.py), each learnt from what a COCO object detector saw in the training photos: for
dining_room, a dining table; for kitchen, an oven, refrigerator, microwave or sink; for
living_room, a couch (tools/add_also.py; the detector is only needed to build them, never at
tagging time, so `also` costs one small product per batch).

A photo whose room type is one of the open-plan rooms gets `also` = the other open-plan room whose
cue is most probable, when that probability reaches the cue's threshold. The thresholds are set on
photos labelled by eye (does this photo show that room type?), held apart from the cue heads'
training, for a stated precision.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .attributes import AttributeHead

ALSO_DIR = "also"


def _most_probable_other(room: str, probs: dict[str, float]) -> tuple[str | None, float | None]:
    """The room type other than `room` with the highest probability in `probs`, and it."""
    others = [(r, p) for r, p in probs.items() if r != room]
    return max(others, key=lambda t: t[1]) if others else (None, None)


def pick_also(room: str, cues: dict[str, float] | None, heads: Sequence[AttributeHead]) -> tuple[str | None, float | None]:
    """(second room type, its cue probability) for a photo the model calls `room`, or (None, None).

    Only between open-plan rooms (those with a cue head): a bathroom with a sink is no kitchen."""
    if not cues or not heads or room not in cues:
        return None, None
    said = {h.name: cues[h.name] for h in heads
            if h.name in cues and h.threshold is not None and cues[h.name] >= h.threshold}
    best, p = _most_probable_other(room, said)
    return best, (None if p is None else round(float(p), 4))


def proposals(rooms: Sequence[str], cue_probs: dict[str, np.ndarray], open_plan: Sequence[str]) -> list[tuple[str | None, float]]:
    """For calibration: per photo, the open-plan room other than its own with the highest cue
    probability, and that probability (None, 0.0 for a photo whose room is not open-plan)."""
    out = []
    for i, room in enumerate(rooms):
        best, p = (_most_probable_other(room, {r: float(cue_probs[r][i]) for r in open_plan})
                   if room in open_plan else (None, None))
        out.append((best, 0.0 if best is None else p))
    return out
