"""Cutting clips where their sound starts and ends: the onset cut and the trim of quiet ends.

Both measure a clip by its 10 ms frames against its own loudest frame, so nothing depends on
the other clips of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sdc.config.fields import option, probability


@dataclass
class OnsetCut:
    """Cut into the start of each clip's sound, as a recording started a moment late, a
    push-to-talk pressed after the first syllable, or a voice activity detector slow to open
    leaves it: "nine" without its "n". 518 of FSDD's 3,000 clips reach a quarter of their peak
    within their first 10 ms (docs/results.md)."""

    p: float = probability(0.0)
    seconds: tuple[float, float] = option((0.0, 0.06), low=0.0, high=1.0)
    """How far past the clip's onset the cut falls, uniform per clip. The onset is the first
    10 ms frame within `ONSET_DB` of the clip's loudest; at most half of a clip is cut."""


@dataclass
class Trim:
    """Cut each clip's start and end where they are quieter than a random threshold, as a
    voice activity detector or a tight trim of the recording leaves it: weak onsets and codas
    ("f", "s", "th") go missing. FSDD's own clips are trimmed unevenly, and a user's detector
    cuts wherever its threshold lies."""

    p: float = probability(0.0)
    threshold_db: tuple[float, float] = option((-30.0, -10.0), low=-100.0, high=0.0)
    """Frames (10 ms) at both ends quieter than this, relative to the clip's loudest frame, are
    cut: drawn uniformly per clip. -10 keeps little more than the vowel."""


ONSET_DB = -20.0
"""A clip's sound starts at its first frame this close (in dB) to its loudest: the quiet lead-in
that FSDD's trimming left is not what the onset cut removes."""

FRAME_SECONDS = 0.01
"""The frame: short enough to keep a stop's burst, long enough to smooth the waveform's own
zero crossings."""


def _loud_frames(
    waves: torch.Tensor, lengths: torch.Tensor, threshold_db: torch.Tensor, sample_rate: int
) -> tuple[torch.Tensor, int]:
    """Which frames (B, frames) of each clip (B, L) are within `threshold_db` (B,) of the clip's
    loudest frame, and the frame's length in samples.

    Each clip is judged against its own loudest frame only, so nothing depends on the other
    clips of the batch. A clip's last, partial frame counts by its own samples; frames past its
    end are never loud.
    """
    frame = max(1, round(FRAME_SECONDS * sample_rate))
    batch, width = waves.shape
    n_frames = -(-width // frame)
    samples = torch.arange(n_frames * frame, device=waves.device)
    inside = samples < lengths.unsqueeze(1)
    padded = torch.nn.functional.pad(waves, (0, n_frames * frame - width)) * inside
    counts = inside.view(batch, n_frames, frame).sum(dim=2)
    power = padded.square().view(batch, n_frames, frame).sum(dim=2) / counts.clamp(min=1)
    decibels = 10 * torch.log10(power + 1e-10)
    loud = decibels >= decibels.amax(dim=1, keepdim=True) + threshold_db.unsqueeze(1)
    return loud & (counts > 0), frame


def _from(waves: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """Each clip (B, L) from sample `start[b]` on, moved to the start of its row."""
    width = waves.shape[1]
    source = (torch.arange(width, device=waves.device) + start.unsqueeze(1)).clamp(max=width - 1)
    return waves.gather(1, source)


def _sound_span(
    waves: torch.Tensor, lengths: torch.Tensor, threshold_db: torch.Tensor, sample_rate: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each clip's sound starts and ends (samples, (B,) each): the start of its first and
    the end of its last frame within `threshold_db` (B,) of its loudest. The trim and the
    onset cut both measure a clip so."""
    loud, frame = _loud_frames(waves, lengths, threshold_db, sample_rate)
    # With no loud frame (no samples at all) both argmaxes are 0: start 0, end 0.
    start = loud.int().argmax(dim=1) * frame
    last = loud.shape[1] - 1 - loud.flip(1).int().argmax(dim=1)
    return start, torch.minimum((last + 1) * frame, lengths)


def trim_quiet_ends(
    waves: torch.Tensor, lengths: torch.Tensor, threshold_db: torch.Tensor, sample_rate: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut each clip (B, L) to the frames from its first to its last within `threshold_db` (B,)
    of its loudest frame; returns the clips, moved to the start of the rows, and their lengths.

    A clip with no samples keeps length 0.
    """
    lengths = lengths.to(waves.device)
    start, end = _sound_span(waves, lengths, threshold_db, sample_rate)
    return _from(waves, start), (end - start).to(lengths.dtype)


def cut_onsets(
    waves: torch.Tensor, lengths: torch.Tensor, seconds: torch.Tensor, sample_rate: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Start each clip (B, L) `seconds[b]` after its onset, the first frame within `ONSET_DB` of
    its loudest, cutting at most half of it; returns the clips, moved to the start of the rows
    and zero after their ends, and their lengths."""
    lengths = lengths.to(waves.device)
    threshold = torch.full_like(seconds, ONSET_DB, dtype=waves.dtype)
    onset, _ = _sound_span(waves, lengths, threshold, sample_rate)
    start = torch.minimum(onset + torch.round(seconds * sample_rate).long(), lengths // 2)
    new_lengths = lengths - start
    inside = torch.arange(waves.shape[1], device=waves.device) < new_lengths.unsqueeze(1)
    return _from(waves, start) * inside, new_lengths
