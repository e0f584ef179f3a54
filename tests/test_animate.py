"""stages.animate and the snapshots train.py keeps for it: which snapshots become frames, and the
APNG read back by Pillow (the oracle), frame for frame."""

import io

import numpy as np
import pytest
from PIL import Image

from stages.animate import apng, chosen
from stages.params import TrainParams
from stages.train import snapshot_epochs

SNAPSHOTS = TrainParams.SNAPSHOTS


@pytest.mark.parametrize("epochs", [1, 7, 50, 1000, 12345])
def test_snapshots_run_to_the_last_epoch_densest_early(epochs):
    kept = sorted(snapshot_epochs(epochs))
    assert kept[-1] == epochs and kept[0] >= 1 and len(kept) <= SNAPSHOTS
    if epochs <= SNAPSHOTS // 2:
        assert kept == list(range(1, epochs + 1))  # every epoch of a short run
    gaps = np.diff([0, *kept])
    assert (np.diff(gaps) >= -1).all()  # never denser later (to rounding)
    if epochs >= 1000:
        assert 10 * gaps[:10].max() < gaps[-1]  # dense at first, ten times sparser at the end


@pytest.mark.parametrize(("snapshots", "frames"), [(170, 40), (170, 2), (170, 200), (5, 40), (1, 40)])
def test_frames_are_spread_over_the_snapshots_first_and_last_included(snapshots, frames):
    picked = chosen(snapshots, frames)
    assert len(picked) == min(frames, snapshots) == len(set(picked))
    assert picked[0] == 0 and picked[-1] == snapshots - 1 and picked == sorted(picked)


def test_apng_frames_read_back_as_drawn():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)]
    for _ in range(4):  # each frame changes part of the last: the rest is sent as transparent pixels
        frame = frames[-1].copy()
        frame[rng.integers(0, 30) :, rng.integers(0, 40) :] = rng.integers(0, 256, 3, dtype=np.uint8)
        frames.append(frame)
    durations = [80, 80, 80, 80, 2000]
    data = apng(frames, durations)
    assert data == apng(frames, durations)  # the same bytes again
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.n_frames == 5 and image.info["loop"] == 0
    for i, frame in enumerate(frames):
        image.seek(i)
        assert image.info["duration"] == durations[i]
        assert np.array_equal(np.asarray(image.convert("RGB")), frame), f"frame {i}"
